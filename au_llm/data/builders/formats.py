"""Every dataset's label files and folder layout, each described once: :data:`DATASET_FORMATS`.

One :class:`DatasetFormat` per ``au-llm manifest`` kind; one builder reads them all
(:func:`au_llm.data.builders.dataset.build_dataset`). Facts and their sources are listed in
``data_manifests/DATASETS.md``. In short (``<root>`` is the frames folder given to ``au-llm
manifest``):

* ``casme2``: ``CASME2-coding-*.xlsx``, header ``Subject, Filename, OnsetFrame, ApexFrame,
  OffsetFrame, Action Units, Estimated Emotion``; frames in ``<root>/subNN/<Filename>/``.
* ``samm``: ``SAMM_Micro_FACS_Codes_v2.xlsx``, header (after a preamble) ``Subject, Filename,
  Inducement Code, Onset Frame, Apex Frame, Offset Frame, ..., Action Units, Estimated Emotion``;
  frames in ``<root>/NNN/<Filename>/``.
* ``casme`` (CASME I): ``casme.xlsx``, columns ``Subject, Filename, OnsetF, ApexF1, ApexF2,
  OffsetF, AU, Emotion`` (plus two unnamed empty columns); frames in ``<root>/subNN/<Filename>/``.
* ``casme3`` (CAS(ME)^3 Part A): ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx``, sheet ``label``,
  columns ``Subject, Filename, Onset, Apex, Offset, AU, Objective class, emotion``; ``Filename``
  names a long recording shared by several clips; frames (named by their frame number) in
  ``<root>/<Subject>/<Filename>/color/``.
* ``mmew``: ``MMEW_Micro_Exp.xlsx``, columns ``Subject, Filename, OnsetFrame, ApexFrame,
  OffsetFrame, Action Units, Estimated Emotion, remarks``; frames in
  ``<root>/<emotion>/<Filename>/``.
* ``4dme``: ``4DME_Labelling_Micro_release v1.xlsx``, columns ``sub_ID, fold_name, Emotion, Onset,
  Apex, Offset, AUs``; frames in ``<root>/<sub_ID>/<fold_name>/``.
* ``samm-lv`` (SAMM Long Videos): ``SAMM_LongVideos_V3_Release.xlsx``, 9 preamble rows, header
  ``Subject, Filename, Inducement Code, Onset, Apex, Offset, Duration, Type, Action Units,
  Notes``; ``Type`` is ``Micro - 1/2`` or ``Macro``; ``Filename`` ``006_1_3`` is expression 3 of
  recording ``006_1``; frames ``<root>/006_1/006_1_0001.jpg`` (no subject folder), 200 fps.
* ``casme-sq-lv`` (CAS(ME)^2): ``CAS(ME)^2code_final.xlsx`` with three sheets and no header rows:
  ``CASFEcode_final`` (subject index, expression name ``disgust1_2``, onset, apex, offset, AUs,
  emotion category, ``micro-expression``/``macro-expression``, self-reported emotion),
  ``naming rule1`` (subject number ``15``, folder ``s15``, subject index ``1``) and
  ``naming rule2`` (stimulus code ``101`` for ``0101``, stimulus label ``disgust1``); frames
  ``<root>/s15/15_0101disgustingteeth/img001.jpg``, 30 fps; an offset 0 or apex 0 means not
  annotated.
* ``casme3-lv`` (CAS(ME)^3 Part A long videos): the ``casme3`` file (micro-expressions) and
  ``cas(me)3_part_A_MaE_label_JpgIndex_v2_emotion.xlsx`` (macro-expressions, the same columns);
  ``Filename`` (``a``..``m``) names the recording; frames ``<root>/spNO.1/a/color/0.jpg``.

Frames are found by the integer at the end of their file names (:mod:`au_llm.data.frames`).
SMIC has no AU labels and is refused for AU detection (:data:`SMIC_REFUSAL`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from au_llm.data.au_codes import cell_text

SMIC_KIND = "smic"
SMIC_REFUSAL = (
    "smic: SMIC has no Action Unit labels (its annotation gives emotion classes only), so it "
    "cannot be used for AU detection; use casme, casme2, casme3, samm, mmew or 4dme"
)
MICRO_MAX_SECONDS = 0.5
"""The longest micro-expression (onset to offset) in the datasets' definitions."""
COMPOSITE_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17)
"""MEB's 12 AUs of the composite benchmark (``dataset_aus["cross"]``)."""

HEADER_ROLES = {
    "subject": "subject",
    "subid": "subject",
    "filename": "clip",
    "foldname": "clip",
    "onset": "onset",
    "onsetf": "onset",
    "onsetframe": "onset",
    "apex": "apex",
    "apexf1": "apex",
    "apexframe": "apex",
    "offset": "offset",
    "offsetf": "offset",
    "offsetframe": "offset",
    "au": "aus",
    "aus": "aus",
    "actionunit": "aus",
    "actionunits": "aus",
    "emotion": "emotion",
    "estimatedemotion": "emotion",
    "type": "type",
    "expressiontype": "type",
}
"""Header cell (lower case, letters and digits only) -> role, for every dataset's header row."""


@dataclass(frozen=True)
class SubjectIds:
    """How a label file's subject cell becomes the subject's id (its folder's name).

    Attributes:
        template: Format of the subject number (``sub{:02d}``: ``1`` -> ``sub01``).
        prefix: Text that may stand before the number, any case (``sub``: ``sub1`` is 1).
        numbers_only: A cell that holds no number is a bad row; else its text is the id.
    """

    template: str = "{}"
    prefix: str = ""
    numbers_only: bool = False

    def read(self, value: object) -> str | None:
        """The id of a subject cell, or None (an empty cell, or no number where one is needed)."""
        text = cell_text(value).strip()
        number = re.match(
            rf"^(?:{re.escape(self.prefix)})?\s*0*(\d+)(?:\.0*)?$", text, re.IGNORECASE
        )
        if number is not None:
            return self.template.format(int(number.group(1)))
        return None if self.numbers_only or not text else text


@dataclass(frozen=True)
class NamingSheets:
    """A label workbook without header rows whose names are looked up in naming sheets.

    CAS(ME)^2's: a subject index is looked up in the subject sheet (number, folder, index), an
    expression's stimulus (its name before the last ``_``) in the stimulus sheet (code, label).
    Each sheet is found by its name, else by its position (label, subjects, stimuli).

    Attributes:
        labels: The label sheet's name.
        positions: Roles of the label sheet's columns by position (None: a column not read).
        subjects: The sheet of subject number, folder name and index.
        stimuli: The sheet of stimulus code and label.
    """

    labels: str
    positions: tuple[str | None, ...]
    subjects: str
    stimuli: str


@dataclass(frozen=True)
class Recordings:
    """What a long-video dataset adds: recordings that hold many annotated expressions.

    Attributes:
        first_frame: Number of a recording's first frame file.
        expression_types: Type cell (lower case, spaces removed) -> kind (``micro``/``macro``).
        type_cells: The type cells as the files write them, for messages.
        file_kinds: The kind of expression each label file of :attr:`DatasetFormat.coding_names`
            lists (``""``: a type column tells each row's kind).
        expression_pattern: Where ``Filename`` names an expression, a regular expression of it
            whose group ``recording`` is the recording (a group ``subject`` must equal the row's
            subject); ``""``: ``Filename`` names the recording and each expression is named by
            its interval (``a_10-15``).
        expression_form: How a ``Filename`` is made up, for messages (``{subject}``: the row's).
        naming: The label workbook's naming sheets, where it has no header row.
    """

    first_frame: int
    expression_types: tuple[tuple[str, str], ...]
    type_cells: tuple[str, ...]
    file_kinds: tuple[str, ...] = ("",)
    expression_pattern: str = ""
    expression_form: str = ""
    naming: NamingSheets | None = None

    def kind_of(self, cell: str) -> str | None:
        """The kind (``micro``/``macro``) a type cell names, or None for an unknown type."""
        return dict(self.expression_types).get(re.sub(r"\s+", "", cell).lower())

    def types_text(self) -> str:
        """The type cells this dataset uses, for messages."""
        return " or ".join(repr(cell) for cell in self.type_cells)


@dataclass(frozen=True)
class DatasetFormat:
    """How one dataset's label files and frame folders are laid out.

    Attributes:
        name: Manifest ``dataset`` value and ``au-llm manifest`` kind (``casme3``).
        title: The dataset's name for messages (``CAS(ME)^3 Part A``).
        coding_names: The label files' real names (more than one: each may be given).
        root_name: The frames folder's name in the dataset's release (``ME_A``).
        fps: Frame rate of the recordings.
        columns: Role -> header text of the required columns, for messages (a sheet without a
            header row: role -> the column's position, counted from 1, as text).
        aus: The AUs the dataset is evaluated on, MEB's ``dataset_aus`` (see
            :mod:`au_llm.data.au_sets`); empty: no AU set (every coded AU counts).
        subjects: How a subject cell becomes the subject's id.
        frames: Templates of the frames folder under the root, tried in order: the first naming
            an existing folder is used (one with ``*`` only where exactly one folder matches);
            where none does, the last without ``*`` is reported missing. Fields: ``subject``,
            ``clip``, ``filename``, ``emotion``; long videos ``recording``, and with naming
            sheets the subject's ``number`` and the stimulus ``code``.
        shared_recordings: Several clips share one ``Filename`` (a long recording) within a
            subject; the second and later clips of a recording get ids ``<Filename>2``,
            ``<Filename>3``, ... (CAS(ME)^3).
        key_frame_marks: AU parts marked ``(k)`` are dropped (4DME).
        recordings: Long videos: one manifest row per annotated expression, with ``recording``
            and ``kind`` columns; None for a dataset of clips.
    """

    name: str
    title: str
    coding_names: tuple[str, ...]
    root_name: str
    fps: float
    columns: dict[str, str]
    aus: tuple[int, ...] = ()
    subjects: SubjectIds = field(default_factory=SubjectIds)
    frames: tuple[str, ...] = ("{subject}/{clip}",)
    shared_recordings: bool = False
    key_frame_marks: bool = False
    recordings: Recordings | None = None

    def subject_id(self, value: object) -> str | None:
        """The subject id of a subject cell (None: none; see :class:`SubjectIds`)."""
        return self.subjects.read(value)


def _columns(
    subject: str, clip: str, onset: str, offset: str, aus: str, **more: str
) -> dict[str, str]:
    """Role -> header text of a format's required columns (``more``: further roles)."""
    return {"subject": subject, "clip": clip, "onset": onset, "offset": offset, "aus": aus, **more}


_CASME3_COLUMNS = _columns("Subject", "Filename", "Onset", "Offset", "AU")
_CASME3_ME = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
_LONG_TYPES = (("micro-expression", "micro"), ("macro-expression", "macro"))

DATASET_FORMATS: dict[str, DatasetFormat] = {
    spec.name: spec
    for spec in (
        DatasetFormat(
            name="casme2",
            title="CASME II",
            coding_names=("CASME2-coding-20190701.xlsx",),
            root_name="CASME2_RAW_selected",
            fps=200.0,
            aus=(1, 2, 4, 7, 12, 14, 15, 17),
            columns=_columns("Subject", "Filename", "OnsetFrame", "OffsetFrame", "Action Units"),
            subjects=SubjectIds("sub{:02d}", prefix="sub", numbers_only=True),
        ),
        DatasetFormat(
            name="samm",
            title="SAMM",
            coding_names=("SAMM_Micro_FACS_Codes_v2.xlsx",),
            root_name="SAMM",
            fps=200.0,
            aus=(2, 4, 7, 12),
            columns=_columns("Subject", "Filename", "Onset Frame", "Offset Frame", "Action Units"),
            subjects=SubjectIds("{:03d}", prefix="sub", numbers_only=True),
        ),
        DatasetFormat(
            name="casme",
            title="CASME",
            coding_names=("casme.xlsx",),
            root_name="CASME_raw_selected",
            fps=60.0,
            aus=(1, 4, 9, 14),
            columns=_columns("Subject", "Filename", "OnsetF", "OffsetF", "AU"),
            subjects=SubjectIds("sub{:02d}", prefix="sub"),
        ),
        DatasetFormat(
            name="casme3",
            title="CAS(ME)^3 Part A",
            coding_names=(_CASME3_ME,),
            root_name="ME_A",
            fps=30.0,
            aus=COMPOSITE_AUS,
            columns=_CASME3_COLUMNS,
            frames=("{subject}/{clip}/color", "{subject}/{filename}/color"),
            shared_recordings=True,
        ),
        DatasetFormat(
            name="mmew",
            title="MMEW",
            coding_names=("MMEW_Micro_Exp.xlsx",),
            root_name="Micro_Expression",
            fps=90.0,
            aus=(1, 2, 4, 5, 7, 10, 12, 14),
            columns=_columns(
                "Subject",
                "Filename",
                "OnsetFrame",
                "OffsetFrame",
                "Action Units",
                emotion="Estimated Emotion",
            ),
            frames=("{emotion}/{filename}", "*/{filename}"),
        ),
        DatasetFormat(
            name="4dme",
            title="4DME",
            coding_names=("4DME_Labelling_Micro_release v1.xlsx",),
            root_name="gray_micro",
            fps=60.0,
            aus=(1, 2, 4, 6, 7, 12, 17, 45),
            columns=_columns("sub_ID", "fold_name", "Onset", "Offset", "AUs"),
            key_frame_marks=True,
        ),
        DatasetFormat(
            name="samm-lv",
            title="SAMM Long Videos",
            coding_names=("SAMM_LongVideos_V3_Release.xlsx",),
            root_name="SAMM_longvideos",
            fps=200.0,
            columns=_columns("Subject", "Filename", "Onset", "Offset", "Action Units", type="Type"),
            subjects=SubjectIds("{:03d}", numbers_only=True),
            frames=("{recording}",),
            recordings=Recordings(
                first_frame=1,
                expression_types=(("micro-1/2", "micro"), ("micro", "micro"), ("macro", "macro")),
                type_cells=("Micro - 1/2", "Macro"),
                expression_pattern=r"(?P<recording>(?P<subject>\d+)_\d+)_\d+",
                expression_form="<subject>_<recording>_<expression> of subject {subject} "
                "(e.g. {subject}_1_3)",
            ),
        ),
        DatasetFormat(
            name="casme-sq-lv",
            title="CAS(ME)^2",
            coding_names=("CAS(ME)^2code_final.xlsx",),
            root_name="rawpic",
            fps=30.0,
            columns=_columns("1", "2", "3", "5", "6", type="8"),
            frames=("{subject}/{number}_{code:04d}*", "{subject}/{number}_{code:04d}"),
            recordings=Recordings(
                first_frame=1,
                expression_types=_LONG_TYPES,
                type_cells=("micro-expression", "macro-expression"),
                naming=NamingSheets(
                    labels="CASFEcode_final",
                    positions=(
                        "subject",
                        "clip",
                        "onset",
                        "apex",
                        "offset",
                        "aus",
                        None,
                        "type",
                        "emotion",
                    ),
                    subjects="naming rule1",
                    stimuli="naming rule2",
                ),
            ),
        ),
        DatasetFormat(
            name="casme3-lv",
            title="CAS(ME)^3 Part A long videos",
            coding_names=(_CASME3_ME, "cas(me)3_part_A_MaE_label_JpgIndex_v2_emotion.xlsx"),
            root_name="part_A",
            fps=30.0,
            columns=_CASME3_COLUMNS,
            subjects=SubjectIds("spNO.{}"),
            frames=("{subject}/{recording}/color",),
            recordings=Recordings(
                first_frame=0,
                expression_types=_LONG_TYPES,
                type_cells=("Micro-expression", "Macro-expression"),
                file_kinds=("micro", "macro"),
            ),
        ),
    )
}
"""Every dataset ``au-llm manifest`` reads, by kind: adding a dataset is one entry here."""

LONG_KINDS = tuple(name for name, spec in DATASET_FORMATS.items() if spec.recordings is not None)
"""The long-video datasets (one manifest row per annotated expression of a recording)."""
