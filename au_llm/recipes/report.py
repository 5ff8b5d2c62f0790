"""``au-llm report RUN_DIR``: every output of a run rebuilt from its finished folds.

The run's saved config gives the report's title, protocol, threshold policy and listed
settings; :func:`~au_llm.reports.rebuild.write_run_report` does the rest.
"""

from __future__ import annotations

import logging
from pathlib import Path

from au_llm.protocols import PROTOCOLS
from au_llm.recipes.run_config import config_summary, saved_config
from au_llm.reports.rebuild import write_run_report
from au_llm.reports.spotting import write_spotting_report
from au_llm.reports.tables import RunTables
from au_llm.runs.run import Run

log = logging.getLogger(__name__)


def build_report(run_dir: Path) -> RunTables:
    """Rebuild predictions.csv, metric tables, plots and report.md of the run in ``run_dir``.

    Under a spotting protocol (``megc``) also the MEGC table (:mod:`au_llm.reports.spotting`).

    Raises:
        FileNotFoundError: The folder holds no started run, or no finished fold.
        ValueError: Finished folds were computed with different CPU thread counts.
    """
    run = Run.read(run_dir)
    cfg = saved_config(run)
    tables = write_run_report(
        run,
        title=f"au-llm run: {cfg.name}",
        protocol=cfg.protocol,
        evaluation=cfg.eval,
        settings=config_summary(cfg, run.aus()),
    )
    if PROTOCOLS[cfg.protocol].spotting:
        write_spotting_report(run, run.aus())
    return tables


def report_if_finished(run: Run) -> RunTables | None:
    """Rebuild the run's outputs; None (with a log line) when no fold of it is finished yet."""
    if not run.has_finished_folds():
        log.warning("%s: no fold of this run is finished yet; no report", run.root)
        return None
    return build_report(run.root)
