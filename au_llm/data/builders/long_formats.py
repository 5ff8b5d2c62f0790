"""Annotation files and folder layouts of the long-video datasets: SAMM-LV, CAS(ME)^2, CAS(ME)^3.

Each long-video dataset annotates every micro- and macro-expression of long recordings by onset,
apex and offset frame. Facts and their sources are in ``data_manifests/DATASETS.md``. In short
(``<root>`` is the frames folder given to ``au-llm manifest``):

* ``samm-lv`` (SAMM Long Videos): ``SAMM_LongVideos_V3_Release.xlsx`` (V2 has the same layout),
  sheet ``FACS_Movement_Only``, 9 preamble rows, header in row 10: ``Subject, Filename,
  Inducement Code, Onset, Apex, Offset, Duration, Type, Action Units, Notes``; ``Type`` is
  ``Micro - 1/2`` or ``Macro``; ``Filename`` ``006_1_3`` is expression 3 of recording ``006_1``;
  frames ``<root>/006_1/006_1_0001.jpg`` (no subject folder; 4-digit numbers, 5 in long
  recordings), 200 fps.
* ``casme-sq-lv`` (CAS(ME)^2): ``CAS(ME)^2code_final.xlsx`` with three sheets and no header rows:
  ``CASFEcode_final`` (subject index, expression name ``disgust1_2``, onset, apex, offset, AUs,
  emotion category, ``micro-expression``/``macro-expression``, self-reported emotion),
  ``naming rule1`` (subject number ``15``, folder ``s15``, subject index ``1``) and
  ``naming rule2`` (stimulus code ``101`` for ``0101``, stimulus label ``disgust1``); frames
  ``<root>/s15/15_0101disgustingteeth/img001.jpg``, 30 fps; an offset 0 or apex 0 means not
  annotated.
* ``casme3-lv`` (CAS(ME)^3 Part A long videos): ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx``
  (sheet ``label``: ``Subject, Filename, Onset, Apex, Offset, AU, Objective class, emotion``,
  micro-expressions) and ``cas(me)3_part_A_MaE_label_JpgIndex_v2_emotion.xlsx`` (macro-expressions,
  the same columns); ``Filename`` (``a``..``m``) names the recording; frames
  ``<root>/spNO.1/a/color/0.jpg`` (numbered from 0), 30 fps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from au_llm.data.builders.formats import CASME3_COLUMNS

LONG_KINDS = ("samm-lv", "casme-sq-lv", "casme3-lv")

MICRO_MAX_SECONDS = 0.5
"""The longest micro-expression (onset to offset) in the datasets' definitions."""


@dataclass(frozen=True)
class LongVideoFormat:
    """How one long-video dataset's annotation files and recordings are laid out.

    Attributes:
        name: Manifest ``dataset`` value and ``au-llm manifest`` kind (``samm-lv``).
        title: The dataset's name for messages (``SAMM Long Videos``).
        coding_names: The label files' real names, each with the kind of expression it lists
            (``""``: a type column tells each row's kind).
        root_name: The frames folder's name in the dataset's release (``SAMM_longvideos``).
        fps: Frame rate of the recordings.
        first_frame: Number of a recording's first frame file.
        columns: Role -> header text of the required columns, for messages (a sheet without a
            header row: role -> the column's position, counted from 1, as text).
        expression_types: Type cell (lower case, spaces removed) -> kind.
        positions: Roles of the columns by position, for a label sheet without a header row
            (CAS(ME)^2's); empty when the header row is searched for.
    """

    name: str
    title: str
    coding_names: tuple[tuple[str, str], ...]
    root_name: str
    fps: float
    first_frame: int
    columns: dict[str, str]
    expression_types: tuple[tuple[str, str], ...]
    positions: tuple[str | None, ...] = ()

    def kind_of(self, cell: str) -> str | None:
        """The kind (``micro``/``macro``) a type cell names, or None for an unknown type."""
        key = re.sub(r"\s+", "", cell).lower()
        return dict(self.expression_types).get(key)

    def types_text(self) -> str:
        """The type cells this dataset uses, for messages."""
        return " or ".join(repr(cell) for cell in _TYPE_CELLS[self.name])

    @property
    def coding_name(self) -> str:
        """The first (or only) label file's real name."""
        return self.coding_names[0][0]


_TYPE_CELLS = {
    "samm-lv": ("Micro - 1/2", "Macro"),
    "casme-sq-lv": ("micro-expression", "macro-expression"),
    "casme3-lv": ("Micro-expression", "Macro-expression"),
}
_LONG_FORMATS = (
    LongVideoFormat(
        name="samm-lv",
        title="SAMM Long Videos",
        coding_names=(("SAMM_LongVideos_V3_Release.xlsx", ""),),
        root_name="SAMM_longvideos",
        fps=200.0,
        first_frame=1,
        columns={
            "subject": "Subject",
            "clip": "Filename",
            "onset": "Onset",
            "offset": "Offset",
            "type": "Type",
            "aus": "Action Units",
        },
        expression_types=(("micro-1/2", "micro"), ("micro", "micro"), ("macro", "macro")),
    ),
    LongVideoFormat(
        name="casme-sq-lv",
        title="CAS(ME)^2",
        coding_names=(("CAS(ME)^2code_final.xlsx", ""),),
        root_name="rawpic",
        fps=30.0,
        first_frame=1,
        columns={"subject": "1", "clip": "2", "onset": "3", "offset": "5", "aus": "6", "type": "8"},
        expression_types=(("micro-expression", "micro"), ("macro-expression", "macro")),
        positions=("subject", "clip", "onset", "apex", "offset", "aus", None, "type", "emotion"),
    ),
    LongVideoFormat(
        name="casme3-lv",
        title="CAS(ME)^3 Part A long videos",
        coding_names=(
            ("cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", "micro"),
            ("cas(me)3_part_A_MaE_label_JpgIndex_v2_emotion.xlsx", "macro"),
        ),
        root_name="part_A",
        fps=30.0,
        first_frame=0,
        columns=CASME3_COLUMNS,
        expression_types=(("micro-expression", "micro"), ("macro-expression", "macro")),
    ),
)


def long_format(name: str) -> LongVideoFormat:
    """The format of one long-video dataset.

    Raises:
        ValueError: An unknown name.
    """
    for spec in _LONG_FORMATS:
        if spec.name == name:
            return spec
    raise ValueError(
        f"unknown long-video dataset {name!r}: expected one of {', '.join(LONG_KINDS)}"
    )
