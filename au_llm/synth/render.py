"""Rendering: the source photo, per-subject identities, AU displacement fields and clip frames."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import cv2  # before anything that may import decord (see the project notes)
import numpy as np

from au_llm.synth.plan import (
    RNG_CLIP,
    RNG_IDENTITY,
    RNG_NOISE,
    AUAction,
    SynthClip,
    difficulty_spec,
    rng_for,
    style_spec,
)

_PAD = 192  # border added around the source photo, in source pixels
_LANDMARKS_FILE = "astronaut_landmarks.csv"

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

# An eye blink (not an AU of the animated set): the upper lids close over the eyes, the lower
# lids rise a little. Used as a distractor in long recordings.
_UPPER_LIDS = (246, 161, 160, 159, 158, 157, 173, 466, 388, 387, 386, 385, 384, 398)
BLINK_CONTROLS: tuple[tuple[tuple[int, ...], float, float, float], ...] = (
    (_UPPER_LIDS, 0.0, -0.05, 0.03),
    (_LOWER_LIDS, 0.0, 0.012, 0.025),
)


@dataclass(frozen=True)
class _Source:
    """The source photo (padded) and its face geometry, in padded source pixels."""

    image: np.ndarray  # [Hs, Ws, 3] float32 RGB in 0..255, border replicated
    points: np.ndarray  # [468, 2] landmarks
    centre: np.ndarray  # [2] centre of the landmark bounding box
    face_width: float  # landmark extent along x
    up: np.ndarray  # [2] unit vector chin -> forehead
    right: np.ndarray  # [2] unit vector towards the image's right


def source_landmarks() -> np.ndarray:
    """The 468 face-mesh landmarks ``[468, 2]`` (x, y pixels) of ``skimage.data.astronaut()``.

    They were found once with mediapipe's FaceMesh and are shipped in ``astronaut_landmarks.csv``,
    so the synthetic datasets are the same whatever landmarker is installed.
    """
    text = resources.files("au_llm.synth").joinpath(_LANDMARKS_FILE).read_text()
    rows = [line for line in text.splitlines() if line and not line.startswith(("#", "x,"))]
    return np.loadtxt(rows, delimiter=",", dtype=np.float64).reshape(468, 2)


def _read_only(array: np.ndarray) -> np.ndarray:
    """``array``, marked read-only: cached arrays are shared by every caller."""
    array.flags.writeable = False
    return array


@lru_cache(maxsize=1)
def _source() -> _Source:
    from skimage import data as skdata

    photo = np.ascontiguousarray(skdata.astronaut()[:, :, :3])
    points = source_landmarks() + _PAD
    padded = cv2.copyMakeBorder(photo, _PAD, _PAD, _PAD, _PAD, cv2.BORDER_REPLICATE)
    low, high = points.min(axis=0), points.max(axis=0)
    up = points[_FOREHEAD] - points[_CHIN]
    up /= np.linalg.norm(up)
    return _Source(
        image=_read_only(padded.astype(np.float32)),
        points=_read_only(points),
        centre=_read_only((low + high) / 2),
        face_width=float(high[0] - low[0]),
        up=_read_only(up),
        right=_read_only(np.array([-up[1], up[0]])),
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
def _au_field(au: int, side: str) -> tuple[int, int, np.ndarray]:
    """Apex displacement field of one AU on the padded source grid, cropped to where it acts.

    Args:
        au: AU number.
        side: ``""``, ``"L"`` or ``"R"``.

    Returns:
        ``(y0, x0, patch)`` as :func:`control_field` gives them.
    """
    if au not in _AU_CONTROLS:
        raise ValueError(f"AU {au} cannot be animated: expected one of {ANIMATED_AUS}")
    if side not in ("", "L", "R"):
        raise ValueError(f"AU {au}: side {side!r} is not '', 'L' or 'R'")
    return control_field(_AU_CONTROLS[au], side, f"AU {au}")


@lru_cache(maxsize=4)
def control_field(
    controls: tuple[tuple[tuple[int, ...], float, float, float], ...], side: str, what: str
) -> tuple[int, int, np.ndarray]:
    """Displacement field of control landmarks on the padded source grid, cropped to where it acts.

    Each control landmark pulls its neighbourhood with a Gaussian weight (cut at 4 sigma); where
    several overlap their vectors are averaged (sum of weighted vectors / max(1, sum of weights)).

    Args:
        controls: ``(landmarks, outward, upward, sigma)`` groups, in units of the face width
            (outward: away from the face's midline).
        side: ``""`` (both sides), ``"L"`` or ``"R"`` (the subject's left / right only).
        what: What moves, for messages (``AU 12``, ``blink``).

    Returns:
        ``(y0, x0, patch)``: ``patch`` ``[h, w, 2]`` float32 is the displacement (x, y) in source
        pixels of rows ``y0..y0+h`` and columns ``x0..x0+w`` (zero elsewhere); content at ``q``
        moves to ``q + field[q]``.
    """
    src = _source()
    height, width = src.image.shape[:2]
    num = np.zeros((height, width, 2), dtype=np.float32)
    den = np.zeros((height, width), dtype=np.float32)
    f = src.face_width
    for landmarks, outward, upward, sigma in controls:
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
    rows, cols = np.nonzero(den)
    if rows.size == 0:
        raise ValueError(f"{what}: no control landmark on side {side!r}")
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    field = num[y0:y1, x0:x1] / np.maximum(den[y0:y1, x0:x1], 1.0)[..., None]
    return int(y0), int(x0), _read_only(field)


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
    spec = style_spec(style)
    src = _source()
    rng = rng_for(seed, spec.code, subject_index, RNG_IDENTITY)
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
        image=_read_only(np.clip(image, 0, 255).astype(np.float32)),
        warp=_read_only(warp.astype(np.float32)),
    )


def activation(onset: int, apex: int, offset: int, frame: int) -> float:
    """Raised-cosine activation in [0, 1]: 0 at onset and offset (and outside), 1 at the apex."""
    if frame <= onset or frame >= offset:
        return 0.0
    if frame <= apex:
        phase = (frame - onset) / (apex - onset)
    else:
        phase = (offset - frame) / (offset - apex)
    return 0.5 * (1.0 - math.cos(math.pi * phase))


@dataclass(frozen=True)
class Framing:
    """Where a subject's face lies in the frames of one clip or recording.

    Attributes:
        map_x: ``[H, W]`` float32 source x of each output pixel (the neutral face).
        map_y: ``[H, W]`` float32 source y of each output pixel.
        linear: ``[2, 2]`` float32: an output-pixel offset -> the source offset it samples.
        scale: Output pixels per source pixel.
        centre: Face centre in output pixels ``(x, y)``.
        face_width: Width of the face's landmarks in output pixels.
        image: ``[Hs, Ws]`` or ``[Hs, Ws, 3]`` uint8 toned source photo (brightness applied).
    """

    map_x: np.ndarray
    map_y: np.ndarray
    linear: np.ndarray
    scale: float
    centre: tuple[float, float]
    face_width: float
    image: np.ndarray

    def motion(self, field: np.ndarray) -> np.ndarray:
        """A source-grid displacement field ``[Hs, Ws, 2]`` sampled at the output pixels.

        Returns:
            ``[H, W, 2]`` float32, in source pixels (subtract ``level * motion`` from the maps).
        """
        return cv2.remap(field, self.map_x, self.map_y, cv2.INTER_LINEAR)


def frame_face(
    style: str,
    seed: int,
    subject_index: int,
    *,
    shift: np.ndarray,
    roll: float,
    zoom: float,
    brightness: float,
    size: float = 1.0,
) -> Framing:
    """The maps of one subject's face framed in the style's image size.

    Args:
        style: ``casme2`` or ``samm`` (image size, colour, the subject's look).
        seed: Seed of the subject's look.
        subject_index: Position of the subject (selects its look).
        shift: ``[2]`` extra head shift in output pixels (at ``size`` 1).
        roll: Extra roll in radians.
        zoom: Factor on the subject's face size.
        brightness: Factor on the photo's brightness.
        size: Factor on the style's image size (and the face's), e.g. 0.5 for half-size frames.

    Returns:
        The framing: output pixel -> source maps.
    """
    spec = style_spec(style)
    ident = _identity(style, seed, subject_index)
    src = _source()
    width, height = round(spec.width * size), round(spec.height * size)
    roll = ident.roll + roll
    scale = ident.scale * zoom * size
    # Output pixel p -> source q = centre + diag(1/aspect, 1) R(-roll) (p - t) / scale.
    cos, sin = math.cos(roll), math.sin(roll)
    linear = np.array([[cos, sin], [-sin, cos]]) / scale
    linear[0] /= ident.aspect
    t = (np.array(ident.centre) + shift) * size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    qx = src.centre[0] + linear[0, 0] * (xs - t[0]) + linear[0, 1] * (ys - t[1])
    qy = src.centre[1] + linear[1, 0] * (xs - t[0]) + linear[1, 1] * (ys - t[1])
    qx, qy = qx.astype(np.float32), qy.astype(np.float32)
    offsets = cv2.remap(ident.warp, qx, qy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    image = np.clip(ident.image * brightness + 0.5, 0, 255).astype(np.uint8)
    return Framing(
        map_x=qx + offsets[..., 0],
        map_y=qy + offsets[..., 1],
        linear=linear.astype(np.float32),
        scale=scale,
        centre=(float(t[0]), float(t[1])),
        face_width=float(src.face_width * scale),
        image=np.ascontiguousarray(image),
    )


def add_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` (uint8) plus integer Gaussian sensor noise of standard deviation ``sigma``."""
    codes = np.frombuffer(rng.bytes(image.size), dtype=np.uint8).reshape(image.shape)
    noisy = image.astype(np.int16) + _noise_table(sigma)[codes]
    return np.clip(noisy, 0, 255).astype(np.uint8)


class ClipRenderer:
    """Renders the frames of one clip (maps computed once per clip)."""

    def __init__(self, clip: SynthClip) -> None:
        spec = style_spec(clip.style)
        level = difficulty_spec(clip.difficulty)
        rng = rng_for(clip.seed, spec.code, clip.subject_index, clip.index, RNG_CLIP)
        shift = rng.uniform(-level.pose_shift, level.pose_shift, size=2) * spec.width
        roll = math.radians(rng.uniform(-level.pose_roll_deg, level.pose_roll_deg))
        zoom = rng.uniform(0.98, 1.02)
        brightness = rng.uniform(0.95, 1.05)
        steps = rng.normal(0.0, level.jitter_step, size=(clip.n_frames, 2))
        path = np.cumsum(steps, axis=0)
        self.jitter = np.clip(path - path.mean(axis=0), -level.jitter_max, level.jitter_max)
        self.noise_sigma = spec.noise_sigma * level.noise_factor
        framing = frame_face(
            clip.style,
            clip.seed,
            clip.subject_index,
            shift=shift,
            roll=roll,
            zoom=zoom,
            brightness=brightness,
        )
        self.map_x = framing.map_x
        self.map_y = framing.map_y
        self.linear = framing.linear
        self.scale = framing.scale
        self.motion = framing.motion(actions_field(clip.actions))
        self.image = framing.image
        self.spec = spec
        self.clip = clip

    def render(self, frame: int, *, noise: bool = True, jitter: bool = True) -> np.ndarray:
        """One frame: ``[H, W, 3]`` uint8 RGB (casme2) or ``[H, W]`` uint8 (samm)."""
        clip = self.clip
        if not clip.onset <= frame <= clip.offset:
            raise ValueError(f"clip {clip.clip}: frame {frame} outside {clip.onset}..{clip.offset}")
        level = np.float32(activation(clip.onset, clip.apex, clip.offset, frame))
        map_x = self.map_x - level * self.motion[..., 0]
        map_y = self.map_y - level * self.motion[..., 1]
        if jitter:
            jx, jy = self.linear @ self.jitter[frame - clip.onset].astype(np.float32)
            map_x += np.float32(jx)
            map_y += np.float32(jy)
        out = cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if not noise:
            return out
        rng = rng_for(clip.seed, self.spec.code, clip.subject_index, clip.index, frame, RNG_NOISE)
        return add_noise(out, self.noise_sigma, rng)


@lru_cache(maxsize=4)
def _noise_table(sigma: float) -> np.ndarray:
    """``[256]`` int16 Gaussian quantiles: a uniform random byte indexes one (fast noise).

    Entry k is ``sigma * Phi^-1((k + 0.5) / 256)`` rounded, so a uniform byte gives integer
    Gaussian noise of standard deviation ``sigma`` (tails cut at 2.7 sigma).
    """
    normal = statistics.NormalDist(0.0, sigma)
    table = [round(normal.inv_cdf((k + 0.5) / 256)) for k in range(256)]
    return _read_only(np.array(table, dtype=np.int16))


def actions_field(actions: Sequence[AUAction]) -> np.ndarray:
    """Apex displacement ``[Hs, Ws, 2]`` float32 of AUs on the source grid (intensities applied)."""
    src = _source()
    total = np.zeros((*src.image.shape[:2], 2), dtype=np.float32)
    for action in actions:
        y0, x0, patch = _au_field(action.au, action.side)
        height, width = patch.shape[:2]
        total[y0 : y0 + height, x0 : x0 + width] += np.float32(action.intensity) * patch
    return total


def blink_field() -> np.ndarray:
    """Displacement ``[Hs, Ws, 2]`` float32 of a full eye blink on the source grid."""
    src = _source()
    total = np.zeros((*src.image.shape[:2], 2), dtype=np.float32)
    y0, x0, patch = control_field(BLINK_CONTROLS, "", "blink")
    total[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]] = patch
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
    return ClipRenderer(clip).render(frame, noise=noise, jitter=jitter)


def apex_motion(clip: SynthClip) -> np.ndarray:
    """Per-pixel displacement of the clip's AUs at the apex, in frame pixels.

    Args:
        clip: A synthetic clip.

    Returns:
        ``[H, W]`` float32 magnitude (about the source displacement times the framing scale).
    """
    renderer = ClipRenderer(clip)
    return np.hypot(renderer.motion[..., 0], renderer.motion[..., 1]) * np.float32(renderer.scale)
