"""The real annotation files and folder layouts of CASME, CAS(ME)^3 Part A, MMEW and 4DME.

Facts and their sources are listed in ``data_manifests/DATASETS.md``. In short (``<root>`` is the
frames folder given to ``au-llm manifest``):

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

Frames are found by the integer at the end of their file names (:mod:`au_llm.data.frames`).
SMIC has no AU labels and is refused for AU detection (:data:`SMIC_REFUSAL`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from au_llm.data.au_codes import cell_text
from au_llm.data.manifest import ManifestError

COMPOSITE_KINDS = ("casme", "casme3", "mmew", "4dme")
SMIC_REFUSAL = (
    "smic: SMIC has no Action Unit labels (its annotation gives emotion classes only), so it "
    "cannot be used for AU detection; use casme, casme2, casme3, samm, mmew or 4dme"
)

# Normalised header cell (lower case, letters and digits only) -> role.
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
    "actionunits": "aus",
    "emotion": "emotion",
    "estimatedemotion": "emotion",
    "type": "type",
    "expressiontype": "type",
}
CASME3_COLUMNS = {
    "subject": "Subject",
    "clip": "Filename",
    "onset": "Onset",
    "offset": "Offset",
    "aus": "AU",
}
"""The required columns of CAS(ME)^3 Part A's label files (micro- and macro-expressions)."""
_SUBJECT_NUMBER = re.compile(r"^(?:sub)?\s*0*(\d+)(?:\.0*)?$", re.IGNORECASE)


@dataclass(frozen=True)
class DatasetFormat:
    """How one dataset's annotation file and frame folders are laid out.

    Attributes:
        name: Manifest ``dataset`` value and ``au-llm manifest`` kind (``casme3``).
        title: The dataset's name for messages (``CAS(ME)^3 Part A``).
        coding_name: The label file's real name.
        root_name: The frames folder's name in MEB's layout (``ME_A``).
        fps: Frame rate of the recordings.
        columns: Role -> header text of the required columns, for messages.
        shared_recordings: Several clips share one ``Filename`` (a long recording) within a
            subject; the second and later clips of a recording get ids ``<Filename>2``,
            ``<Filename>3``, ... (CAS(ME)^3).
        key_frame_marks: AU parts marked ``(k)`` are dropped (4DME).
    """

    name: str
    title: str
    coding_name: str
    root_name: str
    fps: float
    columns: dict[str, str]
    shared_recordings: bool = False
    key_frame_marks: bool = False

    def subject_id(self, value: object) -> str | None:
        """The subject id of a ``Subject`` cell: CASME ``3`` -> ``sub03``; others as written.

        Returns:
            The id, or None for an empty cell.
        """
        text = cell_text(value).strip()
        if not text:
            return None
        match = _SUBJECT_NUMBER.match(text)
        if self.name == "casme" and match is not None:
            return f"sub{int(match.group(1)):02d}"
        if match is not None and re.fullmatch(r"\d+(?:\.0*)?", text):
            return str(int(match.group(1)))
        return text

    def frames_folder(
        self, root: Path, subject: str, clip: str, filename: str, emotion: str
    ) -> Path:
        """The folder holding a clip's frames.

        Args:
            root: The frames root.
            subject: Subject id.
            clip: Clip id (differs from ``filename`` for a repeated CAS(ME)^3 recording).
            filename: The ``Filename`` cell.
            emotion: The emotion cell (MMEW files clips under their emotion).

        Returns:
            The folder (it may not exist; the builder reports that).
        """
        if self.name == "casme3":
            own = root / subject / clip / "color"
            return own if own.is_dir() else root / subject / filename / "color"
        if self.name == "mmew":
            folder = root / emotion / filename
            if folder.is_dir():
                return folder
            found = sorted(path for path in root.glob(f"*/{filename}") if path.is_dir())
            return found[0] if len(found) == 1 else folder
        return root / subject / filename


_FORMATS = (
    DatasetFormat(
        name="casme",
        title="CASME",
        coding_name="casme.xlsx",
        root_name="CASME_raw_selected",
        fps=60.0,
        columns={
            "subject": "Subject",
            "clip": "Filename",
            "onset": "OnsetF",
            "offset": "OffsetF",
            "aus": "AU",
        },
    ),
    DatasetFormat(
        name="casme3",
        title="CAS(ME)^3 Part A",
        coding_name="cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
        root_name="ME_A",
        fps=30.0,
        columns=CASME3_COLUMNS,
        shared_recordings=True,
    ),
    DatasetFormat(
        name="mmew",
        title="MMEW",
        coding_name="MMEW_Micro_Exp.xlsx",
        root_name="Micro_Expression",
        fps=90.0,
        columns={
            "subject": "Subject",
            "clip": "Filename",
            "onset": "OnsetFrame",
            "offset": "OffsetFrame",
            "aus": "Action Units",
            "emotion": "Estimated Emotion",
        },
    ),
    DatasetFormat(
        name="4dme",
        title="4DME",
        coding_name="4DME_Labelling_Micro_release v1.xlsx",
        root_name="gray_micro",
        fps=60.0,
        columns={
            "subject": "sub_ID",
            "clip": "fold_name",
            "onset": "Onset",
            "offset": "Offset",
            "aus": "AUs",
        },
        key_frame_marks=True,
    ),
)


def dataset_format(name: str) -> DatasetFormat:
    """The format of one composite dataset.

    Args:
        name: ``casme``, ``casme3``, ``mmew`` or ``4dme`` (any case).

    Raises:
        ManifestError: For ``smic`` (no AU labels) or an unknown name.
    """
    key = name.strip().lower()
    if key == "smic":
        raise ManifestError(SMIC_REFUSAL)
    for spec in _FORMATS:
        if spec.name == key:
            return spec
    raise ManifestError(f"unknown dataset {name!r}: expected one of {', '.join(COMPOSITE_KINDS)}")
