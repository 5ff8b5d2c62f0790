"""Cross-domain transfer: ``python -m pipelines.cross --config configs/casme2_to_samm.yaml``.

Train on every clip of ``data.manifests`` (the source domain) and test on every clip of
``data.target_manifests``, on the AUs both datasets share. The same as ``au-llm cross``.
"""

import sys

from au_llm.cli import main

if __name__ == "__main__":
    sys.exit(main(["cross", *sys.argv[1:]]))
