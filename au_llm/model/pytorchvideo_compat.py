"""Import pytorchvideo's model builders without a working torchvision.

``pytorchvideo/models/head.py`` does ``from torchvision.ops import RoIAlign`` at import time, only
for its detection head, which this toolkit never builds. torchvision is not usable with the pinned
torch here (see the README), so :func:`import_pytorchvideo_models` imports the real torchvision
when it works and otherwise puts a stub ``torchvision`` / ``torchvision.ops`` (whose ``RoIAlign``
raises when constructed) into ``sys.modules`` only while pytorchvideo's model modules are imported,
then removes the stub again. Leaving it there would break later imports that probe torchvision
(``import transformers`` fails with ``torchvision.__spec__ is None``).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import logging
import sys
import types
from types import ModuleType

logger = logging.getLogger(__name__)

_BUILDER_MODULES = (
    "pytorchvideo.models.x3d",
    "pytorchvideo.models.r2plus1d",
    "pytorchvideo.models.resnet",
    "pytorchvideo.models.csn",
)
_STUB_MARK = "_au_llm_stub"


class _UnavailableRoIAlign:
    """Stand-in for ``torchvision.ops.RoIAlign`` (only pytorchvideo's detection head uses it)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError(
            "torchvision.ops.RoIAlign is unavailable (torchvision does not import here); "
            "pytorchvideo's detection head cannot be built"
        )


def _real_torchvision_imports() -> bool:
    """Return whether the installed torchvision (if any) imports with its ``ops``."""
    before = set(sys.modules)
    try:
        importlib.import_module("torchvision.ops")
    except Exception as exc:  # any failure (missing, CUDA-only build) means "use the stub"
        for name in set(sys.modules) - before:
            if name == "torchvision" or name.startswith("torchvision."):
                del sys.modules[name]
        logger.debug("torchvision unusable (%s); using a stub for pytorchvideo", exc)
        return False
    return True


def _stub_modules() -> dict[str, ModuleType]:
    """Build a minimal ``torchvision`` package that only provides ``ops.RoIAlign``."""
    package = types.ModuleType("torchvision")
    package.__spec__ = importlib.machinery.ModuleSpec("torchvision", None, is_package=True)
    package.__path__ = []
    ops = types.ModuleType("torchvision.ops")
    ops.__spec__ = importlib.machinery.ModuleSpec("torchvision.ops", None)
    ops.RoIAlign = _UnavailableRoIAlign
    package.ops = ops
    for module in (package, ops):
        setattr(module, _STUB_MARK, True)
    return {"torchvision": package, "torchvision.ops": ops}


def import_pytorchvideo_models() -> dict[str, ModuleType]:
    """Import pytorchvideo's video-model builder modules, with the torchvision shim if needed.

    Returns:
        The modules ``pytorchvideo.models.{x3d, r2plus1d, resnet, csn}`` keyed by short name.
    """
    if all(name in sys.modules for name in _BUILDER_MODULES):
        return {name.rsplit(".", 1)[1]: sys.modules[name] for name in _BUILDER_MODULES}
    stubs: dict[str, ModuleType] = {}
    if not _real_torchvision_imports():
        stubs = _stub_modules()
        sys.modules.update(stubs)
    try:
        modules = {
            name.rsplit(".", 1)[1]: importlib.import_module(name) for name in _BUILDER_MODULES
        }
    finally:
        for name, module in stubs.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
    return modules
