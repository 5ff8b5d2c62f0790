"""Leave-one-subject-out: ``python -m pipelines.loso --config configs/casme2_loso.yaml``.

One fold per subject of the manifest(s), a fresh model per fold, no decision made on the test
subject's labels. Finished folds are kept, so re-running the same command resumes. The same as
``au-llm loso``.
"""

import sys

from au_llm.cli import main

if __name__ == "__main__":
    sys.exit(main(["loso", *sys.argv[1:]]))
