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

``difficulty="hard"`` (``au-llm synth --difficulty hard``) makes the task harder: movements about
half as large, three times the head jitter, 2.5 times the sensor noise, larger per-clip pose
changes, and a CASME II-like label imbalance (AU4 in half of the combinations dealt out).

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

Modules: :mod:`.plan` (styles, AU combinations, names and frame numbers: no pixels),
:mod:`.render` (the photo, identities, AU displacement fields, frames), :mod:`.write` (folders and
the .xlsx), :mod:`.styles` (the composite benchmark's layouts) and :mod:`.long` (long recordings
with micro- and macro-expressions at known intervals, in the SAMM-LV, CAS(ME)^2 and CAS(ME)^3
layouts).

The same ``seed`` gives byte-identical files on the same installation: frames are JPEG-encoded
with a fixed quality, and the .xlsx is written with fixed document timestamps and fixed zip entry
dates. The source photo's landmarks were found once with mediapipe FaceMesh (rounded to 1/8 pixel)
and ship as ``astronaut_landmarks.csv``, so the installed landmarker does not change the data;
another OpenCV build may still change a few JPEG pixels.
"""

from __future__ import annotations

from au_llm.synth.plan import DIFFICULTIES, STYLES, AUAction, SynthClip, plan_clips
from au_llm.synth.render import ANIMATED_AUS, apex_motion, render_frame
from au_llm.synth.write import MARKER_NAME, SynthResult, write_synthetic

__all__ = [
    "ANIMATED_AUS",
    "DIFFICULTIES",
    "MARKER_NAME",
    "STYLES",
    "AUAction",
    "SynthClip",
    "SynthResult",
    "apex_motion",
    "plan_clips",
    "render_frame",
    "write_synthetic",
]
