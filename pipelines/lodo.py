"""Leave-one-dataset-out: ``python -m pipelines.lodo --config configs/tiny_cpu_lodo.yaml``.

One fold per dataset of the manifests, a fresh model per fold, no decision made on the test
dataset's labels. Finished folds are kept, so re-running the same command resumes. The same as
``au-llm lodo``.
"""

import sys

from au_llm.cli import main

if __name__ == "__main__":
    sys.exit(main(["lodo", *sys.argv[1:]]))
