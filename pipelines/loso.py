"""Leave-one-subject-out: ``python -m pipelines.loso --config configs/casme2_loso.yaml``.

One fold per subject of the manifest(s), a fresh model per fold, no decision made on the test
subject's labels. Finished folds are kept, so re-running the same command resumes.
"""

from __future__ import annotations

import sys

from au_llm.cli import execute_protocol, protocol_parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run (or resume) the LOSO folds, print the headline table."""
    args = protocol_parser("pipelines.loso").parse_args(argv)
    return execute_protocol(args, "loso")


if __name__ == "__main__":
    sys.exit(main())
