"""The demo: ``python -m pipelines.demo [--out runs/demo] [--no-llm]``, the same as ``au-llm demo``.

``make demo`` runs ``au-llm demo``: synthetic CASME II- and SAMM-style data -> manifests ->
alignment -> LOSO -> cross-domain -> reports, plots and per-clip AU CSVs (see
:func:`au_llm.demo.run_demo` for every step it takes).
"""

import sys

from au_llm.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
