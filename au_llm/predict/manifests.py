"""Predictions for the annotated clips of a manifest: one row per clip."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from au_llm.data.fields import ClipReadError
from au_llm.data.manifest import read_manifest
from au_llm.predict.failures import FailureLog
from au_llm.predict.inputs import input_kind
from au_llm.predict.scorer import ClipScorer
from au_llm.preprocess.align import NO_FACE
from au_llm.preprocess.cache import ClipCache
from au_llm.preprocess.dataset import ClipDataset
from au_llm.preprocess.run import preprocess_manifest


@dataclass
class ManifestPredictor:
    """Aligns a manifest's clips into a cache and scores them.

    Attributes:
        scorer: The model with its options.
        cache_dir: The aligned-clip cache.
        log: Where failed clips and each manifest's summary go.
    """

    scorer: ClipScorer
    cache_dir: Path
    log: FailureLog = field(default_factory=FailureLog)

    def predict(self, path: Path) -> pd.DataFrame:
        """One row per annotated clip: ``source, dataset, subject, clip, onset, offset``, AUs.

        ``dataset`` and ``subject`` are kept because CASME II reuses clip names across subjects;
        labelled manifests keep their ``AUxx_true`` columns. A manifest that cannot be read is
        recorded in the log and gives an empty frame.
        """
        return self.log.attempt(path, lambda: self._predict(path))

    def _predict(self, path: Path) -> pd.DataFrame:
        if input_kind(path) != "manifest":
            raise ClipReadError(f"input {path}: expected a manifest .csv", path)
        return self.predict_rows(path, read_manifest(path))

    def predict_rows(self, path: Path, manifest: pd.DataFrame) -> pd.DataFrame:
        """:meth:`predict` for manifest rows already read (``path`` names them in the log).

        Raises:
            OutputError: The cache cannot be written.
        """
        scorer = self.scorer
        cache = ClipCache(self.cache_dir, scorer.preprocess)
        report = preprocess_manifest(manifest, cache, progress=False)
        usable = []
        for row, rec in zip(manifest.to_dict("records"), report.to_dict("records"), strict=True):
            if rec["status"] == "failed":
                self.log.fail(path, rec["error"], row["clip"])
            elif rec["fallback"] == NO_FACE:
                self.log.fail(path, "no face found", row["clip"])
            else:
                usable.append(row)
        rows = pd.DataFrame(usable, columns=manifest.columns)
        failed = len(manifest) - len(rows)
        reason = f"{failed} clips failed (see failures.csv)" if failed else ""
        self.log.summary.append(
            {
                "input": str(path),
                "windows": len(manifest),
                "failed_windows": failed,
                "reason": reason,
            }
        )
        if rows.empty:
            return pd.DataFrame()
        data = ClipDataset(rows, cache, scorer.aus, scorer.frames_per_clip, scorer.frame_sampling)
        clips = torch.stack([data[i][0] for i in range(len(data))])
        outputs = scorer.outputs(clips)
        labelled = rows["aus"].fillna("").astype(str).str.strip().ne("").any()
        frame = pd.DataFrame(
            {
                "source": str(path),
                "dataset": rows["dataset"],
                "subject": rows["subject"],
                "clip": rows["clip"],
                "onset": rows["onset"],
                "offset": rows["offset"],
            }
        )
        labels = data.labels.numpy() if labelled else None
        explained = None
        if scorer.explain:
            explained = {c: rows[c] for c in ("au_raw", "aus") if c in rows.columns}
        return frame.assign(**scorer.columns(frame, outputs, labels, explained))
