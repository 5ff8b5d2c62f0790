from pathlib import Path

import cv2
import pytest

from au_llm.config import PreprocessConfig
from au_llm.preprocess.cache import ClipCache
from au_llm.preprocess.preview import write_contact_sheet
from au_llm.preprocess.run import preprocess_manifest

from .conftest import Clips


def test_contact_sheet(clips: Clips, tmp_path: Path) -> None:
    cfg = PreprocessConfig(size=48, color="rgb", align="clip", workers=0)
    manifest = clips.manifest()
    preprocess_manifest(manifest, ClipCache(tmp_path / "cache", cfg), progress=False)
    cache = ClipCache(tmp_path / "cache", cfg)
    out = write_contact_sheet(manifest, cache, 2, tmp_path / "sheet" / "preview.png")
    image = cv2.imread(str(out))
    assert image is not None
    assert image.shape[1] == 800 and 400 <= image.shape[0] <= 430  # 2 rows of 2.1 inches at 100 dpi
    with pytest.raises(ValueError, match="none of the 1 clips"):
        write_contact_sheet(manifest.iloc[[3]], cache, 2, tmp_path / "x.png")
