"""The run's PNG plots."""

from au_llm.reports.plots import write_plots
from au_llm.reports.tables import compute_tables
from tests.reports.helpers import AUS, predictions_frame

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_ok(path):
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(PNG_MAGIC)


def test_write_plots(tmp_path):
    tables = compute_tables(predictions_frame(), AUS)
    with_ref = write_plots(tables, tmp_path / "a", "SAMM", optimistic=True)
    without = write_plots(tables, tmp_path / "b", None, optimistic=True)
    assert [p.name for p in with_ref] == ["f1_per_au.png", "f1_fold_heatmap.png"]
    assert all(_png_ok(p) for p in with_ref + without)
    # The reference line changes the bar figure only when the dataset matches.
    other = write_plots(tables, tmp_path / "c", "SAMM", optimistic=True)
    assert other[0].read_bytes() == with_ref[0].read_bytes()
    assert with_ref[0].read_bytes() != without[0].read_bytes()
    plain = write_plots(tables, tmp_path / "d", None, optimistic=False)
    assert plain[1].read_bytes() != without[1].read_bytes()
