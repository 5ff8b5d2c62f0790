"""A model folder's chat template rendered within bounds of work and size.

A chat template is Jinja code shipped with a model. Transformers renders it in Jinja's sandbox,
which keeps it from reading files or Python internals but not from looping ``range(100000)``
inside ``range(100000)``, or doubling a string forty times. :func:`render_bounded` runs a render
under a trace function (``sys.settrace``, this thread only, the previous one restored) that
counts every Python step taken: the template's own lines, the Jinja runtime and filters they call,
and compiling the template, whose cost grows with its length. It also measures every value the
template's lines hold and pass to calls, and the text they write. Past :data:`MAX_STEPS` steps
(plus :data:`STEPS_PER_CHARACTER` per character of the template), :data:`MAX_TEMPLATE_LINES` of
the template's lines, or a value or output longer than :data:`MAX_LENGTH`, the render stops with
:class:`TemplateLimitError`. These bounds count work, not time: the same template is accepted or
refused on every machine however loaded, and a refusal comes within seconds. Lines that each run
long built-in work (``range(100000)|sum`` in a loop) are stopped after :data:`MAX_SECONDS`
(a render of a real template takes well under a second). One built-in operation that makes a
huge value from small ones at once (``'x' * 10**10``) is not seen before it has run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

MAX_STEPS = 1_000_000
"""Python steps (calls, lines, returns) a render may take besides compiling the template."""
STEPS_PER_CHARACTER = 200
"""Steps allowed per character of the template: compiling took about 70 (Jinja 3.1)."""
MAX_TEMPLATE_LINES = 100_000
"""Lines of the template's own code a render may run (each one's values are measured)."""
MAX_LENGTH = 1_000_000
"""Most characters (or items) of any value the template builds, and of its output."""
MAX_SECONDS = 10.0
"""A backstop for lines that each run long built-in work (``range(100000)|sum`` in a loop)."""
# The file name Jinja gives the code it compiles from a template string.
_TEMPLATE_CODE = "<template>"
_SIZED = (str, bytes, list, tuple, dict, set, frozenset)


class TemplateLimitError(RuntimeError):
    """A chat template took more steps, or built a longer value, than a render may."""


def _check_lengths(values: Iterable[Any], depth: int = 1) -> None:
    """Raise if a value (or, ``depth`` levels down, an item of a list or tuple) is too long."""
    for value in values:
        if isinstance(value, _SIZED):
            if len(value) > MAX_LENGTH:
                raise TemplateLimitError(
                    f"it built a value of {len(value):,} characters or items (at most "
                    f"{MAX_LENGTH:,})"
                )
            if depth and isinstance(value, list | tuple):
                _check_lengths(value, depth - 1)


class _Limits:
    """The trace function of one render: counts steps, measures values and output.

    Every Python step counts; the template's own lines are counted apart (measuring the values
    they hold costs more than a step), and so are the arguments of the calls its code makes
    (a ``namespace`` attribute set, a macro called, ``~`` joining strings).
    """

    def __init__(self, steps: int) -> None:
        self.allowed = steps
        self.steps_left = steps
        self.lines_left = MAX_TEMPLATE_LINES
        self.deadline = time.monotonic() + MAX_SECONDS
        self.output = 0

    def _past(self, what: str) -> TemplateLimitError:
        return TemplateLimitError(f"it ran past {what} (a loop or recursion without a useful end?)")

    def __call__(self, frame: FrameType, event: str, arg: Any) -> _Limits:
        self.steps_left -= 1
        if self.steps_left < 0:
            raise self._past(f"{self.allowed:,} steps")
        if frame.f_code.co_filename == _TEMPLATE_CODE:
            if event == "line":
                self.lines_left -= 1
                if self.lines_left < 0:
                    raise self._past(f"{MAX_TEMPLATE_LINES:,} lines of its own code")
                if time.monotonic() > self.deadline:
                    raise self._past(f"{MAX_SECONDS:g} seconds")
                _check_lengths(frame.f_locals.values())
            elif event == "return" and isinstance(arg, str):
                self.output += len(arg)
                if self.output > MAX_LENGTH:
                    raise TemplateLimitError(f"it wrote more than {MAX_LENGTH:,} characters")
        elif event == "call" and frame.f_back and frame.f_back.f_code.co_filename == _TEMPLATE_CODE:
            _check_lengths(frame.f_locals.values())
        return self


def render_bounded(render: Callable[[], str], template: str) -> str:
    """``render()`` (which renders ``template``) within the bounds of this module.

    Args:
        render: Renders the template, e.g. a tokenizer's ``apply_chat_template`` call.
        template: The template's text (its length sets the steps allowed for compiling it).

    Returns:
        What ``render`` returned.

    Raises:
        TemplateLimitError: The render went past a bound; the message says which.
    """
    limits = _Limits(MAX_STEPS + STEPS_PER_CHARACTER * len(template))
    previous = sys.gettrace()
    sys.settrace(limits)
    try:
        text = render()
    finally:
        sys.settrace(previous)
    if len(text) > MAX_LENGTH:
        raise TemplateLimitError(f"it wrote more than {MAX_LENGTH:,} characters")
    return text
