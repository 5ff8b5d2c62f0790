"""Leave-one-subject-out: ``python -m pipelines.loso --config configs/casme2_loso.yaml``.

One fold per subject of the manifest(s), a fresh model per fold, no decision made on the test
subject's labels. Finished folds are kept, so re-running the same command resumes.
"""

from __future__ import annotations

import sys

from au_llm.cli import protocol_parser, protocol_request
from au_llm.protocol import run_protocol
from au_llm.reports.rebuild import headline_text


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run (or resume) the LOSO folds, print the headline table."""
    args = protocol_parser("pipelines.loso").parse_args(argv)
    run_dir, tables = run_protocol(*protocol_request(args, "loso"))
    print(headline_text(run_dir, tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
