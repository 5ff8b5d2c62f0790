"""What defines an AU-LLM model: built once from the config sections, stored once in checkpoints."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from au_llm.config import ModelConfig, PreprocessConfig, SamplingConfig, config_from_dict
from au_llm.config_keys import upgrade_saved_model


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build an :class:`~au_llm.model.modeling_au_llm.AULLM`.

    Attributes:
        model: The model configuration (backbone, projector, LLM).
        aus: AU numbers, in output order (one score per AU).
        in_channels: Clip channels (1 gray, 3 RGB; 3 more with optical flow).
        frames_per_clip: Frames of each clip fed to the model (``T``).
        size: Frame side in pixels.
    """

    model: ModelConfig
    aus: tuple[int, ...]
    in_channels: int
    frames_per_clip: int
    size: int

    def __post_init__(self) -> None:
        if not self.aus:
            raise ValueError("ModelSpec.aus: expected at least one AU")
        if len(set(self.aus)) != len(self.aus):
            raise ValueError(f"ModelSpec.aus = {list(self.aus)}: AUs must be unique")

    @property
    def n_aus(self) -> int:
        """Number of AU outputs."""
        return len(self.aus)

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        """``(C, T, H, W)`` of one clip."""
        return (self.in_channels, self.frames_per_clip, self.size, self.size)

    @classmethod
    def from_sections(
        cls,
        model: ModelConfig,
        aus: list[int],
        preprocess: PreprocessConfig,
        sampling: SamplingConfig,
    ) -> ModelSpec:
        """The spec of the model trained on ``aus``.

        Args:
            model: The ``model`` section.
            aus: AU numbers, in output order.
            preprocess: The ``preprocess`` section (channels and frame size of the clips).
            sampling: The ``sampling`` section (frames per clip).
        """
        return cls(
            model,
            tuple(int(a) for a in aus),
            preprocess.input_channels,
            sampling.frames_per_clip,
            preprocess.size,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (``from_dict`` inverts it)."""
        data = asdict(self)
        data["aus"] = list(self.aus)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Rebuild a spec written by :meth:`to_dict`, validating the model configuration.

        A model configuration saved before a key changed is read in today's keys
        (:func:`~au_llm.config_keys.upgrade_saved_model`).

        Raises:
            ValueError: If the data is incomplete or the model configuration is invalid.
        """
        missing = {"model", "aus", "in_channels", "frames_per_clip", "size"} - set(data)
        if missing:
            raise ValueError(f"model spec: missing {sorted(missing)}")
        try:
            model = config_from_dict(ModelConfig, upgrade_saved_model(data["model"]))
        except Exception as exc:
            raise ValueError(f"model spec: invalid model configuration: {exc}") from exc
        return cls(
            model,
            tuple(int(a) for a in data["aus"]),
            int(data["in_channels"]),
            int(data["frames_per_clip"]),
            int(data["size"]),
        )
