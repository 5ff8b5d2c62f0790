"""Could a perceptual hash find re-encoded copies of clips without refusing distinct clips?

The content guard (:func:`au_llm.protocols.check_no_content_leak`) compares exact frame hashes, so
a JPEG re-encoded copy of a clip (other pixels) is not found. This measures, on synthetic
datasets (``au_llm.synth``: every subject is rendered from one photo, as real recordings of one
lab share a booth, a camera and a background), a 63-bit DCT perceptual hash of each source frame
(gray, 32x32 area-downsampled, the 8x8 lowest frequencies without the constant one, each bit
above or below their median): the largest Hamming distance between a frame and its JPEG
re-encoding (quality 95, 75, 50), against the smallest distance between any two frames of two
different clips of different subjects and of the same subject. A perceptual guard needs the
first well below the other two.

Usage: ``python bench/perceptual_copies.py [--out bench/results/perceptual_copies.json]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np

from au_llm.data.frames import index_frames
from au_llm.synth import write_synthetic

QUALITIES = (95, 75, 50)
DATASETS = [("casme2", "normal"), ("casme2", "hard"), ("samm", "normal"), ("samm", "hard")]


def perceptual_hash(image: np.ndarray) -> np.ndarray:
    """``[63]`` bool DCT hash of a BGR or gray image."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(gray.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:8, :8].flatten()[1:]
    return low > np.median(low)


def reencoded(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` written as a JPEG of ``quality`` and decoded again."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)


def measure(style: str, difficulty: str, root: Path) -> dict:
    """Distances on one synthetic dataset (6 subjects x 4 clips, seed 0)."""
    synth = write_synthetic(style, root / f"{style}_{difficulty}", 6, 4, 0, None, difficulty)
    images = {
        (clip.subject, clip.clip): [
            cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            for _, path in sorted(index_frames(clip.frames_dir).items())
        ]
        for clip in synth.clips
    }
    hashes = {key: np.stack([perceptual_hash(f) for f in frames]) for key, frames in images.items()}
    between: dict[str, list[int]] = {"same_subject": [], "other_subject": []}
    for (a, ha), (b, hb) in itertools.combinations(hashes.items(), 2):
        closest = int((ha[:, None] != hb[None]).sum(-1).min())
        between["same_subject" if a[0] == b[0] else "other_subject"].append(closest)
    copies = {
        str(quality): max(
            int((perceptual_hash(reencoded(frame, quality)) != hashes[key][i]).sum())
            for key, frames in images.items()
            for i, frame in enumerate(frames)
        )
        for quality in QUALITIES
    }
    return {
        "clips": len(images),
        "reencoded_max": copies,
        "other_subject_min": min(between["other_subject"]),
        "same_subject_min": min(between["same_subject"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/perceptual_copies.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {f"{s}_{d}": measure(s, d, Path(tmp)) for s, d in DATASETS}
    summary = {
        "bits": 63,
        "datasets": results,
        "reencoded_max": max(max(r["reencoded_max"].values()) for r in results.values()),
        "other_subject_min": min(r["other_subject_min"] for r in results.values()),
    }
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
