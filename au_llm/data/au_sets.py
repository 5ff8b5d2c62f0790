"""Named AU sets of each dataset and of the composite benchmark, and the unknown-label rule.

The sets are MEB's ``dataset_aus`` (github:tvaranka/meb, ``meb/utils/utils.py``): the AUs each
dataset is evaluated on (frequent enough to score), given by each dataset's description
(:attr:`~au_llm.data.builders.formats.DatasetFormat.aus`). CAS(ME)^3 Part A has no entry there;
it is FACS-coded with the composite's AUs, so its set is :data:`COMPOSITE_AUS`. The long-video
datasets have none.

**Unknown labels.** With ``data.uncoded_aus: unknown``, an AU outside a clip's dataset set is
*unknown* for that clip, not negative: :func:`unknown_aus_column` lists those AUs per clip (the
manifest column ``aus_unknown``), :func:`~au_llm.data.manifest.au_label_matrix` gives them the
label nan, the losses skip nan targets (:mod:`au_llm.losses`) and every metric skips clips
whose label is nan for that AU (:mod:`au_llm.metrics`). The default ``negative`` keeps the usual
rule (an AU not named in a clip's cell is absent), which MEB's composite also uses (it fills
missing AU columns with 0).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pandas as pd

from au_llm.data.au_codes import format_aus, parse_aus
from au_llm.data.builders.formats import COMPOSITE_AUS, DATASET_FORMATS

__all__ = [
    "COMPOSITE_AUS",
    "DATASET_AU_SETS",
    "UNCODED_RULES",
    "UNKNOWN_COLUMN",
    "unknown_aus",
    "unknown_aus_column",
    "unknown_positives",
]

DATASET_AU_SETS: dict[str, tuple[int, ...]] = {
    name: spec.aus for name, spec in DATASET_FORMATS.items() if spec.aus
}
"""Dataset -> its AU set, for the datasets that have one."""
UNCODED_RULES = ("negative", "unknown")
UNKNOWN_COLUMN = "aus_unknown"


def unknown_aus(dataset: str, aus: Sequence[int]) -> tuple[int, ...]:
    """The AUs of ``aus`` outside ``dataset``'s set (none for a dataset without a set)."""
    coded = DATASET_AU_SETS.get(dataset)
    if coded is None:
        return ()
    return tuple(sorted(int(au) for au in aus if int(au) not in coded))


def unknown_aus_column(frame: pd.DataFrame, aus: Sequence[int]) -> pd.Series:
    """Per clip, the canonical list (``"5+6"``) of the AUs its dataset does not code.

    Args:
        frame: A manifest (``dataset`` column).
        aus: The AUs a run detects.

    Returns:
        Strings aligned with ``frame``'s index (``""`` where every AU is coded).
    """
    lists = {name: format_aus(unknown_aus(name, aus)) for name in frame["dataset"].unique()}
    return frame["dataset"].map(lists).astype(str)


def unknown_positives(frame: pd.DataFrame, aus: Sequence[int]) -> dict[tuple[str, int], int]:
    """Coded positives that the unknown-label rule turns into unknown labels.

    Args:
        frame: A manifest (``dataset`` and canonical ``aus`` columns).
        aus: The AUs a run detects.

    Returns:
        (dataset, AU) -> number of clips whose ``aus`` names that AU although it lies outside
        the dataset's set (only AUs of ``aus``).
    """
    counts: Counter[tuple[str, int]] = Counter()
    for dataset, text in zip(frame["dataset"], frame["aus"], strict=True):
        counts.update((str(dataset), au) for au in unknown_aus(str(dataset), parse_aus(text)))
    wanted = {int(au) for au in aus}
    return {key: n for key, n in sorted(counts.items()) if key[1] in wanted}
