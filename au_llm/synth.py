"""Built-in synthetic micro-expression data, written in the real CASME II and SAMM on-disk formats.

The toolkit's default data (the demo, the tests). Every frame is a real photograph,
``skimage.data.astronaut()`` (public domain, 512x512 RGB), warped so that the face looks like a
different person per subject and a localised facial movement happens in each clip:

* **Subjects** differ in face geometry (a smooth random warp plus a jaw-width change), aspect,
  scale, roll, position, skin tone (per-channel gain, gamma), brightness and a lighting gradient;
  everything is drawn from ``seed`` and the subject's index.
* **Clips** of one subject differ by a small head-pose offset (shift, roll, scale) and a
  brightness change, both drawn independently of the AUs.
* **Action Units** are smooth, Gaussian-weighted displacement fields around FaceMesh landmarks of
  the source photo (the brows for AU1 / AU2 / AU4, the lower lids for AU7, the lip corners for
  AU12 / AU14 / AU15, the chin boss and lower lip for AU17). At the apex they move their region
  by about 3-4.5 % of the face width (1-3 pixels in a 64x64 aligned crop), rising and falling as a
  raised cosine between onset, apex and offset. A unilateral AU (``L12``, ``R14``) moves only that
  side; L and R are the *subject's* sides, so ``R`` is the left-hand side of the image.
* **Nuisances**: Gaussian sensor noise drawn per frame (integer-rounded), a sub-pixel
  random-walk head jitter (at most 0.6 px per axis), JPEG compression.

Nothing but the facial movement depends on the AU label: clip lengths, onset frame numbers, apex
position, episode / inducement codes, pose and brightness are drawn from random streams that do
not see the AUs, and the AU combinations are dealt out evenly over subjects.

Formats (see ``datasets.md`` of the project notes):

* ``casme2``: ``<out>/CASME2_RAW_selected/subNN/EPxx_yy[f]/imgK.jpg`` (RGB 640x480, K = the
  annotation frame number, not padded) and ``<out>/CASME2-coding-20190701.xlsx`` (header in row 1).
* ``samm``: ``<out>/SAMM/NNN/NNN_a_b/NNN_KKKKK.jpg`` (grayscale, 5-digit frame numbers) and
  ``<out>/SAMM_Micro_FACS_Codes_v2.xlsx`` (13 preamble rows, header in row 14). Real SAMM frames
  are 2040x1088; these are 680x363 (a third of each side, same aspect) to keep writing and
  preprocessing fast.

Only the frames onset..offset are written (as in ``CASME2_RAW_selected`` and SAMM's folders).
Clips have 12-24 frames by default (real ones have 40-100 at 200 fps): the models sample 6.

The same ``seed`` gives byte-identical files on the same installation: frames are JPEG-encoded
with a fixed quality, and the .xlsx is written with fixed document timestamps and fixed zip entry
dates. The source landmarks come from mediapipe FaceMesh (rounded to 1/8 pixel), so another
mediapipe build could shift them slightly.
"""

from __future__ import annotations

import datetime
import io
import logging
import math
import shutil
import statistics
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2  # before anything that may import decord (see the project notes)
import numpy as np

from au_llm.io_utils import atomic_write_bytes

logger = logging.getLogger(__name__)

STYLES: tuple[str, ...] = ("casme2", "samm")
MARKER_NAME = ".au_llm_synthetic"
"""File written in a synthetic frames root; only a root holding it is ever replaced."""

_FIXED_TIME = datetime.datetime(2020, 1, 1, 0, 0, 0)
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)
_PAD = 192  # border added around the source photo, in source pixels

# FaceMesh indices used to describe the source face.
_FOREHEAD, _CHIN, _NOSE_BRIDGE = 10, 152, 168
_INNER_BROWS = (107, 66, 55, 65, 336, 296, 285, 295)
_MID_BROWS = (105, 52, 334, 282)
_OUTER_BROWS = (70, 63, 46, 53, 300, 293, 276, 283)
_LOWER_LIDS = (163, 144, 145, 153, 154, 390, 373, 374, 380, 381)
_LIP_CORNERS = (61, 291)
_CHIN_BOSS = (199, 175, 200)
_LOWER_LIP = (17, 84, 314)

# Per AU: control points (landmarks, outward shift, upward shift, Gaussian sigma), in units of
# the source face width. "Outward" is away from the face's midline.
_AU_CONTROLS: dict[int, tuple[tuple[tuple[int, ...], float, float, float], ...]] = {
    1: ((_INNER_BROWS, 0.0, 0.045, 0.06), (_MID_BROWS, 0.0, 0.02, 0.06)),
    2: ((_OUTER_BROWS, 0.005, 0.045, 0.06), (_MID_BROWS, 0.0, 0.02, 0.06)),
    4: (
        (_INNER_BROWS, -0.03, -0.03, 0.06),
        (_MID_BROWS + _OUTER_BROWS, -0.01, -0.025, 0.06),
    ),
    7: ((_LOWER_LIDS, 0.0, 0.035, 0.045),),
    12: ((_LIP_CORNERS, 0.035, 0.03, 0.08),),
    14: ((_LIP_CORNERS, -0.035, 0.005, 0.06),),
    15: ((_LIP_CORNERS, 0.01, -0.04, 0.08),),
    17: ((_CHIN_BOSS, 0.0, 0.035, 0.09), (_LOWER_LIP, 0.0, 0.025, 0.05)),
}
ANIMATED_AUS: tuple[int, ...] = tuple(sorted(_AU_CONTROLS))
"""AUs the generator can animate."""

# AU combinations (AU, side) with the estimated emotion and objective class written for them.
# Each style's pool is dealt out evenly, so every AU of the style's evaluated set is positive in
# 3-4 of every 16 clips.
_Combo = tuple[tuple[tuple[int, str], ...], str, int]
_CASME_COMBOS: tuple[_Combo, ...] = (
    (((1, ""), (2, "")), "surprise", 2),
    (((1, "R"), (2, "R")), "surprise", 2),
    (((1, ""), (2, "L")), "others", 2),
    (((4, ""),), "others", 3),
    (((4, ""), (7, "")), "disgust", 3),
    (((7, ""),), "others", 3),
    (((12, ""),), "happiness", 1),
    (((12, "R"),), "happiness", 1),
    (((7, ""), (12, "")), "happiness", 1),
    (((14, ""),), "repression", 7),
    (((14, "L"),), "repression", 7),
    (((15, ""), (17, "")), "repression", 5),
    (((17, ""),), "repression", 7),
    (((4, ""), (15, "")), "sadness", 5),
    (((1, ""), (4, ""), (15, "")), "sadness", 5),
    (((14, ""), (17, "")), "repression", 7),
)
_SAMM_COMBOS: tuple[_Combo, ...] = (
    (((12, ""),), "Happiness", 1),
    (((12, "R"),), "Contempt", 7),
    (((4, ""),), "Anger", 3),
    (((4, ""), (7, "")), "Anger", 3),
    (((7, ""),), "Other", 3),
    (((1, ""), (2, "")), "Surprise", 2),
    (((2, "L"),), "Other", 2),
    (((7, ""), (12, "")), "Happiness", 1),
    (((14, "R"),), "Contempt", 7),
    (((15, ""), (17, "")), "Sadness", 5),
    (((1, ""), (2, ""), (4, "")), "Fear", 6),
    (((4, ""), (15, "")), "Sadness", 5),
    (((1, "R"), (2, "R")), "Surprise", 2),
    (((12, ""), (15, "")), "Other", 7),
    (((17, ""),), "Other", 7),
    (((7, "L"),), "Other", 7),
)

_SAMM_SUBJECTS = (6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 28)
_SAMM_SUBJECTS += (30, 31, 32, 33, 34, 35, 36, 37)

_SAMM_PREAMBLE: tuple[str | None, ...] = (
    "SAMM - Spontaneous Actions and Micro-Movements: FACS codes of the micro-movements",
    "SYNTHETIC DATA written by au-llm (au_llm.synth): no real participant, same layout as the "
    "real file",
    None,
    "Citation notes: when using the real database cite Davison, A. K., Lansley, C., Costen, N., "
    "Tan, K., Yap, M. H. (2018). SAMM: A Spontaneous Micro-Facial Movement Dataset. IEEE "
    "Transactions on Affective Computing, 9(1), 116-129.",
    "Frame numbers are the numbers in the image file names (200 frames per second).",
    None,
    "Key:",
    "/ = or",
    "? = unclear offset",
    "L = left, R = right (unilateral action, the participant's side)",
    "A = asymmetric (as a prefix, e.g. A12)",
    "Intensity: A = trace, B = slight, C = marked, D = severe, E = maximum (e.g. 12A, 4+7B)",
    None,
)
_SAMM_HEADER = (
    "Subject",
    "Filename",
    "Inducement Code",
    "Onset Frame",
    "Apex Frame",
    "Offset Frame",
    "Duration",
    "Micro",
    "Action Units",
    "Estimated Emotion",
    "Objective Classes",
    "Notes",
)
_CASME_HEADER = (
    "Subject",
    "Filename",
    None,
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    None,
    "Action Units",
    "Estimated Emotion",
    "Objective Classes",
)

# Random-stream purposes (the last entry of every seed sequence).
_RNG_LAYOUT, _RNG_IDENTITY, _RNG_CLIP, _RNG_NOISE = 1, 2, 3, 4


@dataclass(frozen=True)
class _Style:
    """Rendering and naming settings of one dataset style."""

    code: int
    width: int
    height: int
    gray: bool
    face_width: tuple[float, float]  # landmark extent in output pixels
    centre_x: tuple[float, float]  # face centre, fraction of the width
    centre_y: tuple[float, float]  # face centre, fraction of the height
    roll_deg: float
    noise_sigma: float
    jpeg_quality: int
    onset_range: tuple[int, int]
    root_name: str
    coding_name: str
    combos: tuple[_Combo, ...]


_STYLES: dict[str, _Style] = {
    "casme2": _Style(
        code=2,
        width=640,
        height=480,
        gray=False,
        face_width=(170.0, 215.0),
        centre_x=(0.44, 0.56),
        centre_y=(0.50, 0.58),
        roll_deg=4.0,
        noise_sigma=2.0,
        jpeg_quality=92,
        onset_range=(20, 250),
        root_name="CASME2_RAW_selected",
        coding_name="CASME2-coding-20190701.xlsx",
        combos=_CASME_COMBOS,
    ),
    "samm": _Style(
        code=3,
        width=680,
        height=363,
        gray=True,
        face_width=(120.0, 150.0),
        centre_x=(0.38, 0.62),
        centre_y=(0.48, 0.56),
        roll_deg=3.0,
        noise_sigma=1.5,
        jpeg_quality=90,
        onset_range=(800, 6000),
        root_name="SAMM",
        coding_name="SAMM_Micro_FACS_Codes_v2.xlsx",
        combos=_SAMM_COMBOS,
    ),
}


@dataclass(frozen=True)
class AUAction:
    """One animated Action Unit of a clip.

    Attributes:
        au: AU number (one of ``ANIMATED_AUS``).
        side: ``""`` (both sides), ``"L"`` or ``"R"`` (the subject's left / right only).
        intensity: Apex amplitude relative to the AU's nominal displacement (0.75-1.3 when drawn).
    """

    au: int
    side: str
    intensity: float


@dataclass(frozen=True)
class SynthClip:
    """One synthetic clip, as written.

    Attributes:
        style: ``casme2`` or ``samm``.
        seed: Seed the dataset was written with.
        subject: Subject folder name (``sub05``, ``011``).
        subject_number: ``Subject`` cell of the spreadsheet (5, 11).
        subject_index: Position of the subject among the generated ones (selects its identity).
        index: Position of the clip within its subject (selects its pose, brightness, jitter).
        clip: ``Filename`` cell and clip folder name (``EP07_02f``, ``011_3_2``).
        onset: First frame number.
        apex: Apex frame number (onset < apex < offset).
        offset: Last frame number.
        aus: Intended AU set, sorted.
        au_cell: ``Action Units`` cell as written (an int for one plain AU, else a string).
        emotion: ``Estimated Emotion`` cell.
        objective_class: ``Objective Classes`` cell.
        actions: The animated AUs with their side and intensity.
        frames_dir: Folder of the clip's frames.
    """

    style: str
    seed: int
    subject: str
    subject_number: int
    subject_index: int
    index: int
    clip: str
    onset: int
    apex: int
    offset: int
    aus: tuple[int, ...]
    au_cell: int | str
    emotion: str
    objective_class: int
    actions: tuple[AUAction, ...]
    frames_dir: Path

    @property
    def n_frames(self) -> int:
        """Number of frames written (onset..offset)."""
        return self.offset - self.onset + 1

    def frame_path(self, frame: int) -> Path:
        """Path of the JPEG file of frame number ``frame``."""
        if self.style == "samm":
            return self.frames_dir / f"{self.subject}_{frame:05d}.jpg"
        return self.frames_dir / f"img{frame}.jpg"


@dataclass
class SynthResult:
    """What :func:`write_synthetic` wrote.

    Attributes:
        style: ``casme2`` or ``samm``.
        root: Frames root (pass it to the manifest builder).
        coding: The annotation spreadsheet (.xlsx).
        clips: Every clip, in spreadsheet row order.
    """

    style: str
    root: Path
    coding: Path
    clips: list[SynthClip]


def _style(style: str) -> _Style:
    if style not in _STYLES:
        raise ValueError(f"synthetic style {style!r}: expected one of {', '.join(STYLES)}")
    return _STYLES[style]


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


# --------------------------------------------------------------------------- source photo


@dataclass(frozen=True)
class _Source:
    """The source photo (padded) and its face geometry, in padded source pixels."""

    image: np.ndarray  # [Hs, Ws, 3] float32 RGB in 0..255, border replicated
    points: np.ndarray  # [468, 2] landmarks
    centre: np.ndarray  # [2] centre of the landmark bounding box
    face_width: float  # landmark extent along x
    up: np.ndarray  # [2] unit vector chin -> forehead
    right: np.ndarray  # [2] unit vector towards the image's right


def _detect_source_landmarks(image: np.ndarray) -> np.ndarray:
    from au_llm.preprocess.landmarks import detect_landmarks

    points = detect_landmarks(image)
    if points is None:
        raise RuntimeError("mediapipe FaceMesh found no face on skimage.data.astronaut()")
    # Rounded so that tiny numeric differences between runs cannot change the rendering.
    return np.round(np.asarray(points, dtype=np.float64)[:468] * 8) / 8


@lru_cache(maxsize=1)
def _source() -> _Source:
    from skimage import data as skdata

    photo = np.ascontiguousarray(skdata.astronaut()[:, :, :3])
    points = _detect_source_landmarks(photo) + _PAD
    padded = cv2.copyMakeBorder(photo, _PAD, _PAD, _PAD, _PAD, cv2.BORDER_REPLICATE)
    low, high = points.min(axis=0), points.max(axis=0)
    up = points[_FOREHEAD] - points[_CHIN]
    up /= np.linalg.norm(up)
    return _Source(
        image=padded.astype(np.float32),
        points=points,
        centre=(low + high) / 2,
        face_width=float(high[0] - low[0]),
        up=up,
        right=np.array([-up[1], up[0]]),
    )


def _person_mask(src: _Source) -> np.ndarray:
    """Soft ``[Hs, Ws]`` mask (0..1) of the head and upper body, for a replaced background."""
    height, width = src.image.shape[:2]
    mask = np.zeros((height, width), dtype=np.float32)
    f = src.face_width
    centre = src.centre - src.up * 0.2 * f
    angle = math.degrees(math.atan2(src.up[0], -src.up[1]))
    axes = (round(0.85 * f), round(1.05 * f))
    cv2.ellipse(mask, (round(centre[0]), round(centre[1])), axes, angle, 0, 360, 1.0, -1)
    # The suit below the face, in photo coordinates (the photo never changes).
    body = np.array(
        [(118, 165), (300, 165), (330, 250), (358, 300), (368, 512), (25, 512), (40, 330)]
        + [(75, 262)],
        dtype=np.int32,
    )
    cv2.fillPoly(mask, [body + _PAD], 1.0)
    return cv2.GaussianBlur(mask, (0, 0), 4.0)


def _side_of(src: _Source, point: np.ndarray) -> str:
    """``R`` (subject's right = image left), ``L`` or ``""`` (on the midline)."""
    across = float((point - src.points[_NOSE_BRIDGE]) @ src.right)
    if abs(across) < 0.03 * src.face_width:
        return ""
    return "L" if across > 0 else "R"


@lru_cache(maxsize=32)
def _au_field(au: int, side: str) -> np.ndarray:
    """Apex displacement field of one AU on the padded source grid.

    Args:
        au: AU number.
        side: ``""``, ``"L"`` or ``"R"``.

    Returns:
        ``[Hs, Ws, 2]`` float32 displacement (x, y) in source pixels; content at ``q`` moves to
        ``q + field[q]``.
    """
    if au not in _AU_CONTROLS:
        raise ValueError(f"AU {au} cannot be animated: expected one of {ANIMATED_AUS}")
    if side not in ("", "L", "R"):
        raise ValueError(f"AU {au}: side {side!r} is not '', 'L' or 'R'")
    src = _source()
    height, width = src.image.shape[:2]
    num = np.zeros((height, width, 2), dtype=np.float32)
    den = np.zeros((height, width), dtype=np.float32)
    f = src.face_width
    for landmarks, outward, upward, sigma in _AU_CONTROLS[au]:
        radius = int(math.ceil(4 * sigma * f))
        for index in landmarks:
            point = src.points[index]
            point_side = _side_of(src, point)
            if side and point_side != side:
                continue
            sign = {"L": 1.0, "R": -1.0, "": 0.0}[point_side]
            vector = (sign * outward * src.right + upward * src.up) * f
            cx, cy = int(round(point[0])), int(round(point[1]))
            x0, x1 = max(cx - radius, 0), min(cx + radius + 1, width)
            y0, y1 = max(cy - radius, 0), min(cy + radius + 1, height)
            xs = np.arange(x0, x1, dtype=np.float32) - point[0]
            ys = np.arange(y0, y1, dtype=np.float32) - point[1]
            weight = np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * (sigma * f) ** 2))
            den[y0:y1, x0:x1] += weight
            num[y0:y1, x0:x1] += weight[..., None] * vector.astype(np.float32)
    return num / np.maximum(den, 1.0)[..., None]


# --------------------------------------------------------------------------- identities, clips


@dataclass(frozen=True)
class _Identity:
    """Appearance and framing of one synthetic subject."""

    scale: float  # output pixels per source pixel
    aspect: float
    roll: float  # radians
    centre: tuple[float, float]  # face centre in output pixels
    image: np.ndarray  # [Hs, Ws] or [Hs, Ws, 3] float32 toned source
    warp: np.ndarray  # [Hs, Ws, 2] float32 identity warp (source offsets)


@lru_cache(maxsize=2)
def _identity(style: str, seed: int, subject_index: int) -> _Identity:
    spec = _style(style)
    src = _source()
    rng = _rng(seed, spec.code, subject_index, _RNG_IDENTITY)
    f = src.face_width
    height, width = src.image.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy = xs - np.float32(src.centre[0]), ys - np.float32(src.centre[1])
    envelope = np.exp(-(dx**2 + dy**2) / (2 * (1.3 * f) ** 2))

    # Face geometry: a smooth random field plus a wider or narrower jaw.
    grid = rng.normal(0.0, 0.02 * f, size=(5, 5, 2)).astype(np.float32)
    warp = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    jaw = rng.uniform(-0.08, 0.08)
    warp[..., 0] += jaw * dx * np.clip(dy / f, -1.0, 1.0)
    warp *= envelope[..., None]

    # Skin tone, gamma, brightness and a lighting gradient across the face.
    tone = rng.uniform(0.0, 1.0)
    gains = np.array([1.0 - 0.30 * tone, 0.97 - 0.38 * tone, 0.94 - 0.45 * tone])
    gains *= rng.uniform(0.96, 1.04, size=3) * rng.uniform(0.85, 1.12)
    gamma = rng.uniform(0.8, 1.25)
    theta = rng.uniform(0, 2 * math.pi)
    ramp = (dx * math.cos(theta) + dy * math.sin(theta)) / (2 * f)
    light = 1.0 + rng.uniform(0.05, 0.25) * np.clip(ramp, -1.0, 1.0)
    image = 255.0 * (src.image / 255.0) ** gamma * gains.astype(np.float32)
    image *= light[..., None]
    if spec.gray:
        gray = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        level = rng.uniform(185, 225)
        background = level * (1.0 + 0.08 * (ys - height / 2) / height)
        mask = _person_mask(src)
        image = mask * gray + (1.0 - mask) * background
    return _Identity(
        scale=rng.uniform(*spec.face_width) / f,
        aspect=rng.uniform(0.94, 1.06),
        roll=math.radians(rng.uniform(-spec.roll_deg, spec.roll_deg)),
        centre=(
            rng.uniform(*spec.centre_x) * spec.width,
            rng.uniform(*spec.centre_y) * spec.height,
        ),
        image=np.clip(image, 0, 255).astype(np.float32),
        warp=warp.astype(np.float32),
    )


def _profile(clip: SynthClip, frame: int) -> float:
    """Raised-cosine activation in [0, 1]: 0 at onset and offset, 1 at the apex."""
    if frame <= clip.onset or frame >= clip.offset:
        return 0.0
    if frame <= clip.apex:
        phase = (frame - clip.onset) / (clip.apex - clip.onset)
    else:
        phase = (clip.offset - frame) / (clip.offset - clip.apex)
    return 0.5 * (1.0 - math.cos(math.pi * phase))


class _ClipRenderer:
    """Renders the frames of one clip (maps computed once per clip)."""

    def __init__(self, clip: SynthClip) -> None:
        spec = _style(clip.style)
        ident = _identity(clip.style, clip.seed, clip.subject_index)
        src = _source()
        rng = _rng(clip.seed, spec.code, clip.subject_index, clip.index, _RNG_CLIP)
        shift = rng.uniform(-0.015, 0.015, size=2) * spec.width
        roll = ident.roll + math.radians(rng.uniform(-1.5, 1.5))
        scale = ident.scale * rng.uniform(0.98, 1.02)
        brightness = rng.uniform(0.95, 1.05)
        steps = rng.normal(0.0, 0.15, size=(clip.n_frames, 2))
        path = np.cumsum(steps, axis=0)
        self.jitter = np.clip(path - path.mean(axis=0), -0.6, 0.6)

        # Output pixel p -> source q = centre + diag(1/aspect, 1) R(-roll) (p - t) / scale.
        cos, sin = math.cos(roll), math.sin(roll)
        linear = np.array([[cos, sin], [-sin, cos]]) / scale
        linear[0] /= ident.aspect
        t = np.array(ident.centre) + shift
        ys, xs = np.mgrid[0 : spec.height, 0 : spec.width].astype(np.float32)
        qx = src.centre[0] + linear[0, 0] * (xs - t[0]) + linear[0, 1] * (ys - t[1])
        qy = src.centre[1] + linear[1, 0] * (xs - t[0]) + linear[1, 1] * (ys - t[1])
        qx, qy = qx.astype(np.float32), qy.astype(np.float32)
        offsets = cv2.remap(ident.warp, qx, qy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        self.map_x = qx + offsets[..., 0]
        self.map_y = qy + offsets[..., 1]
        self.linear = linear.astype(np.float32)
        self.scale = scale
        apex = _clip_field(clip.actions)
        self.motion = cv2.remap(apex, self.map_x, self.map_y, cv2.INTER_LINEAR)
        image = np.clip(ident.image * brightness + 0.5, 0, 255).astype(np.uint8)
        self.image = np.ascontiguousarray(image)
        self.spec = spec
        self.clip = clip

    def render(self, frame: int, noise: bool = True, jitter: bool = True) -> np.ndarray:
        """One frame: ``[H, W, 3]`` uint8 RGB (casme2) or ``[H, W]`` uint8 (samm)."""
        clip = self.clip
        if not clip.onset <= frame <= clip.offset:
            raise ValueError(f"clip {clip.clip}: frame {frame} outside {clip.onset}..{clip.offset}")
        level = np.float32(_profile(clip, frame))
        map_x = self.map_x - level * self.motion[..., 0]
        map_y = self.map_y - level * self.motion[..., 1]
        if jitter:
            jx, jy = self.linear @ self.jitter[frame - clip.onset].astype(np.float32)
            map_x += np.float32(jx)
            map_y += np.float32(jy)
        out = cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if not noise:
            return out
        rng = _rng(clip.seed, self.spec.code, clip.subject_index, clip.index, frame, _RNG_NOISE)
        codes = np.frombuffer(rng.bytes(out.size), dtype=np.uint8).reshape(out.shape)
        noisy = out.astype(np.int16) + _noise_table(self.spec.noise_sigma)[codes]
        return np.clip(noisy, 0, 255).astype(np.uint8)


@lru_cache(maxsize=4)
def _noise_table(sigma: float) -> np.ndarray:
    """``[256]`` int16 Gaussian quantiles: a uniform random byte indexes one (fast noise).

    Entry k is ``sigma * Phi^-1((k + 0.5) / 256)`` rounded, so a uniform byte gives integer
    Gaussian noise of standard deviation ``sigma`` (tails cut at 2.7 sigma).
    """
    normal = statistics.NormalDist(0.0, sigma)
    return np.array([round(normal.inv_cdf((k + 0.5) / 256)) for k in range(256)], dtype=np.int16)


def _clip_field(actions: Sequence[AUAction]) -> np.ndarray:
    src = _source()
    total = np.zeros((*src.image.shape[:2], 2), dtype=np.float32)
    for action in actions:
        total += np.float32(action.intensity) * _au_field(action.au, action.side)
    return total


def render_frame(
    clip: SynthClip, frame: int, *, noise: bool = True, jitter: bool = True
) -> np.ndarray:
    """Render one frame of a synthetic clip exactly as :func:`write_synthetic` encodes it.

    Args:
        clip: A clip from :attr:`SynthResult.clips` (or a ``dataclasses.replace`` of one, e.g.
            with other ``actions``).
        frame: Frame number, onset..offset.
        noise: Add the per-frame sensor noise.
        jitter: Apply the per-frame head jitter.

    Returns:
        ``[H, W, 3]`` uint8 RGB for ``casme2``, ``[H, W]`` uint8 for ``samm``, before JPEG coding.
    """
    return _ClipRenderer(clip).render(frame, noise=noise, jitter=jitter)


def apex_motion(clip: SynthClip) -> np.ndarray:
    """Per-pixel displacement of the clip's AUs at the apex, in frame pixels.

    Args:
        clip: A synthetic clip.

    Returns:
        ``[H, W]`` float32 magnitude (about the source displacement times the framing scale).
    """
    renderer = _ClipRenderer(clip)
    return np.hypot(renderer.motion[..., 0], renderer.motion[..., 1]) * np.float32(renderer.scale)


# --------------------------------------------------------------------------- layout and writing


def _subject_numbers(style: str, subjects: int, rng: np.random.Generator) -> list[int]:
    pool = list(range(1, 27)) if style == "casme2" else list(_SAMM_SUBJECTS)
    limit = 99 if style == "casme2" else 999
    if subjects > limit:
        raise ValueError(f"{style}: at most {limit} synthetic subjects, got {subjects}")
    if subjects > len(pool):
        pool += list(range(pool[-1] + 1, pool[-1] + 1 + subjects - len(pool)))
    return sorted(int(n) for n in rng.choice(pool, size=subjects, replace=False))


def _dealt_combos(spec: _Style, count: int, rng: np.random.Generator) -> list[_Combo]:
    """``count`` combinations: concatenated random permutations of the pool (even coverage)."""
    dealt: list[_Combo] = []
    while len(dealt) < count:
        dealt += [spec.combos[i] for i in rng.permutation(len(spec.combos))]
    return dealt[:count]


def _intensity_letter(intensity: float) -> str:
    return "A" if intensity < 0.9 else "B" if intensity < 1.1 else "C"


def _au_cell(style: str, actions: Sequence[AUAction], rng: np.random.Generator) -> int | str:
    parts = []
    for action in actions:
        part = f"{action.side}{action.au}"
        if style == "samm" and rng.random() < 0.5:
            part += _intensity_letter(action.intensity)
        parts.append(part)
    if len(parts) == 1 and parts[0].isdigit():
        return int(parts[0])
    return "+".join(parts)


def plan_clips(
    style: str,
    subjects: int = 8,
    clips_per_subject: int = 8,
    seed: int = 0,
    frames_per_clip: int | None = None,
) -> list[SynthClip]:
    """The clips :func:`write_synthetic` writes with the same arguments, without any pixels.

    Names, frame numbers, AUs and cells are drawn from streams of their own: the timing
    (length, onset, apex) and the episode / inducement codes never see the AUs.

    Returns:
        Clips in spreadsheet order; ``frames_dir`` is relative to the frames root.
    """
    spec = _style(style)
    rng = _rng(seed, spec.code, _RNG_LAYOUT)
    numbers = _subject_numbers(style, subjects, rng)
    combos = _dealt_combos(spec, subjects * clips_per_subject, rng)
    timing = _rng(seed, spec.code, _RNG_LAYOUT, 1)
    clips: list[SynthClip] = []
    for s, number in enumerate(numbers):
        folder = f"sub{number:02d}" if style == "casme2" else f"{number:03d}"
        counters: dict[int, int] = {}
        rows = []
        for k in range(clips_per_subject):
            pairs, emotion, objective = combos[s * clips_per_subject + k]
            n = frames_per_clip if frames_per_clip else int(timing.integers(12, 25))
            onset = int(timing.integers(*spec.onset_range))
            apex = onset + int(timing.integers(round(0.3 * (n - 1)), round(0.6 * (n - 1)) + 1))
            apex = min(max(apex, onset + 1), onset + n - 2)
            code = int(timing.integers(1, 20 if style == "casme2" else 8))
            counters[code] = counters.get(code, 0) + 1
            if style == "casme2":
                suffix = "f" if timing.random() < 0.3 else ""
                name = f"EP{code:02d}_{counters[code]:02d}{suffix}"
            else:
                name = f"{folder}_{code}_{counters[code]}"
            actions = tuple(
                AUAction(au, side, round(float(rng.uniform(0.75, 1.3)), 3)) for au, side in pairs
            )
            rows.append((name, k, onset, apex, n, actions, emotion, objective))
        for name, k, onset, apex, n, actions, emotion, objective in sorted(rows):
            clips.append(
                SynthClip(
                    style=style,
                    seed=seed,
                    subject=folder,
                    subject_number=number,
                    subject_index=s,
                    index=k,
                    clip=name,
                    onset=onset,
                    apex=apex,
                    offset=onset + n - 1,
                    aus=tuple(sorted(a.au for a in actions)),
                    au_cell=_au_cell(style, actions, rng),
                    emotion=emotion,
                    objective_class=objective,
                    actions=actions,
                    frames_dir=Path(folder) / name,
                )
            )
    return clips


def _coding_rows(style: str, clips: Sequence[SynthClip]) -> list[list[object]]:
    rows: list[list[object]] = []
    for c in clips:
        if style == "casme2":
            rows.append(
                [c.subject_number, c.clip, None, c.onset, c.apex, c.offset, None, c.au_cell]
                + [c.emotion, c.objective_class]
            )
        else:
            inducement = int(c.clip.split("_")[1])
            rows.append(
                [c.subject_number, c.clip, inducement, c.onset, c.apex, c.offset, c.n_frames]
                + ["Micro - 1/2", c.au_cell, c.emotion, c.objective_class, None]
            )
    return rows


def _xlsx_bytes(style: str, clips: Sequence[SynthClip]) -> bytes:
    """The annotation workbook, with fixed document and zip timestamps (byte-reproducible)."""
    from openpyxl import Workbook
    from openpyxl.writer.excel import ExcelWriter

    book = Workbook()
    sheet = book.active
    if style == "casme2":
        sheet.title = "Sheet1"
        sheet.append(list(_CASME_HEADER))
    else:
        sheet.title = "FACS_Codes"
        for line in _SAMM_PREAMBLE:
            sheet.append([line])
        sheet.append(list(_SAMM_HEADER))
    for row in _coding_rows(style, clips):
        sheet.append(row)
    book.properties.creator = "au-llm synthetic data"
    book.properties.created = _FIXED_TIME
    book.properties.modified = _FIXED_TIME
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        ExcelWriter(book, archive).save()
    fixed = io.BytesIO()
    with (
        zipfile.ZipFile(raw) as source,
        zipfile.ZipFile(fixed, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=_ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o600 << 16
            target.writestr(entry, source.read(info.filename))
    return fixed.getvalue()


def _prepare_root(root: Path) -> None:
    """Create an empty frames root; replace one only when it holds the synthetic marker."""
    if root.exists():
        if not (root / MARKER_NAME).is_file() and any(root.iterdir()):
            raise FileExistsError(
                f"{root}: exists and is not synthetic data written by au_llm.synth "
                f"(no {MARKER_NAME}); choose another output folder"
            )
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / MARKER_NAME).write_text("synthetic micro-expression frames written by au_llm.synth\n")


def write_synthetic(
    style: str,
    out: Path,
    subjects: int = 8,
    clips_per_subject: int = 8,
    seed: int = 0,
    frames_per_clip: int | None = None,
) -> SynthResult:
    """Write a synthetic micro-expression dataset in the CASME II or SAMM on-disk format.

    Args:
        style: ``casme2`` (RGB 640x480 ``subNN/EPxx_yy/imgK.jpg`` + ``CASME2-coding-20190701.xlsx``)
            or ``samm`` (grayscale 680x363 ``NNN/NNN_a_b/NNN_KKKKK.jpg`` +
            ``SAMM_Micro_FACS_Codes_v2.xlsx``).
        out: Output folder; the frames root and the spreadsheet go inside it. An existing frames
            root is replaced only if it was written by this function.
        subjects: Number of subjects (default 8; CASME II ids are drawn from 1-26, SAMM ids from
            the real ones 6-37).
        clips_per_subject: Clips per subject (default 8). AU combinations are dealt from a pool
            of 16 realistic ones, so with the defaults each combination occurs 4 times and every
            AU of the style's set is positive in 19-25 % of the clips.
        seed: Seed of everything random; the same seed writes byte-identical files.
        frames_per_clip: Frames per clip (onset..offset, at least 3); None draws 12-24 per clip.

    Returns:
        The frames root, the spreadsheet and every clip.

    Raises:
        ValueError: For an unknown style or impossible sizes.
        FileExistsError: When the frames root exists and is not synthetic.
    """
    spec = _style(style)
    if subjects < 1 or clips_per_subject < 1:
        raise ValueError(
            f"synthetic {style}: subjects ({subjects}) and clips_per_subject "
            f"({clips_per_subject}) must be >= 1"
        )
    if frames_per_clip is not None and frames_per_clip < 3:
        raise ValueError(f"synthetic {style}: frames_per_clip = {frames_per_clip}, expected >= 3")
    out = Path(out)
    root = out / spec.root_name
    layout = plan_clips(style, subjects, clips_per_subject, seed, frames_per_clip)
    _prepare_root(root)
    clips = [
        SynthClip(**{**vars(c), "frames_dir": root / c.frames_dir})  # absolute folders
        for c in layout
    ]
    params = [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality]
    for clip in sorted(clips, key=lambda c: (c.subject_index, c.index)):
        clip.frames_dir.mkdir(parents=True)
        renderer = _ClipRenderer(clip)
        for frame in range(clip.onset, clip.offset + 1):
            image = renderer.render(frame)
            if image.ndim == 3:
                image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            ok, encoded = cv2.imencode(".jpg", image, params)
            if not ok:
                raise RuntimeError(f"{clip.clip}: JPEG encoding of frame {frame} failed")
            clip.frame_path(frame).write_bytes(encoded.tobytes())
    coding = out / spec.coding_name
    atomic_write_bytes(coding, _xlsx_bytes(style, clips))
    logger.info("wrote synthetic %s data: %d clips under %s", style, len(clips), root)
    return SynthResult(style=style, root=root, coding=coding, clips=clips)
