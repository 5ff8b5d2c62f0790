"""Synthetic long recordings with micro- and macro-expressions at known intervals.

For spotting (finding the expressions in a long recording) and spot-then-recognize. A recording
is a neutral face for most of its length with head motion (slow drift, quick turns, jitter) and
eye blinks as distractors; micro-expressions (at most 0.5 s, small movements, 1-3 AUs) and
macro-expressions (0.6-3 s, twice the amplitude) sit at known, never-overlapping intervals.
The faces, AU movements and noise are those of the synthetic clips (:mod:`au_llm.synth`).

Modules: :mod:`.recording` (a recording's expressions, blinks, head motion, frame names),
:mod:`.plan` (timelines, names: no pixels), :mod:`.render` (frames one at a time), :mod:`.write`
(frame folders and annotation files in each dataset's real layout).
"""

from au_llm.synth.long.plan import LONG_STYLES, plan_long_recordings
from au_llm.synth.long.recording import Blink, HeadTurn, LongExpression, LongRecording
from au_llm.synth.long.render import LongRenderer, iter_long_frames
from au_llm.synth.long.write import LongSynthResult, write_long_style

__all__ = [
    "LONG_STYLES",
    "Blink",
    "HeadTurn",
    "LongExpression",
    "LongRecording",
    "LongRenderer",
    "LongSynthResult",
    "iter_long_frames",
    "plan_long_recordings",
    "write_long_style",
]
