"""report.md."""

import pandas as pd

from au_llm.reports.markdown import write_markdown_report
from au_llm.reports.plots import write_plots
from au_llm.reports.tables import OPTIMISTIC_NOTE, compute_tables
from tests.reports.helpers import AUS, predictions_frame


def _report(tables, tmp_path, optimistic):
    plots = write_plots(tables, tmp_path / "plots", "casme2", optimistic=optimistic)
    return write_markdown_report(
        tables,
        tmp_path,
        title="LOSO on CASME II",
        protocol="loso",
        config_summary={"eval": {"threshold_policy": "test-oracle" if optimistic else "train"}},
        excluded_clips=[{"dataset": "casme2", "subject": "s3", "clip": "c9", "reason": "no face"}],
        plots=plots,
        optimistic=optimistic,
        notes=["tiny synthetic run"],
    ).read_text()


def test_write_markdown_report_optimistic(tmp_path):
    frame = pd.concat([predictions_frame(1), predictions_frame(2, flip=2)], ignore_index=True)
    text = _report(compute_tables(frame, AUS), tmp_path, optimistic=True)
    lines = text.splitlines()
    assert OPTIMISTIC_NOTE in "\n".join(lines[:4])
    # Every table of numbers (headline, per AU, per fold, seeds) carries the note.
    for heading in ("## Headline", "## Per-AU", "## Per-fold", "## Seeds"):
        section = text.split(heading, 1)[1].split("\n## ", 1)[0]
        assert OPTIMISTIC_NOTE in section, heading
    assert "(plots/f1_per_au.png)" in text and "(plots/f1_fold_heatmap.png)" in text
    assert "no face" in text and "c9" in text
    assert "test-oracle" in text
    assert "± " in text


def test_write_markdown_report_not_optimistic(tmp_path):
    tables = compute_tables(predictions_frame(), AUS)
    text = _report(tables, tmp_path, optimistic=False)
    assert "optimistic" not in text
    assert "Binary F1 (positive class)" in text and '"Macro" F1' in text
    assert f"{tables.summary['metrics']['pooled_binary_f1']:.3f}" in text
    assert "0.814" in text  # the paper's CASME II average, shown as a labelled reference
    assert "## Seeds" not in text
    assert "`train`" in text
