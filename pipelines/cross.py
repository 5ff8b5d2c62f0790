"""Cross-domain transfer: ``python -m pipelines.cross --config configs/casme2_to_samm.yaml``.

Train on every clip of ``data.manifests`` (the source domain) and test on every clip of
``data.target_manifests``, on the AUs both datasets share.
"""

from __future__ import annotations

import sys

from au_llm.cli import execute_protocol, protocol_parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run (or resume) the cross-domain fold, print the headline table."""
    args = protocol_parser("pipelines.cross").parse_args(argv)
    return execute_protocol(args, "cross")


if __name__ == "__main__":
    sys.exit(main())
