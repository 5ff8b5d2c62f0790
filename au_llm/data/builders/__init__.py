"""Manifest builders of the composite benchmark's datasets: CASME, CAS(ME)^3 Part A, MMEW, 4DME.

Each dataset's annotation file and folder layout is described by a :class:`DatasetFormat`
(:mod:`.formats`); one builder (:func:`build_composite_dataset`, :mod:`.sheet`) reads them all.
"""

from au_llm.data.builders.formats import (
    COMPOSITE_KINDS,
    SMIC_KIND,
    SMIC_REFUSAL,
    DatasetFormat,
    dataset_format,
)
from au_llm.data.builders.sheet import build_composite_dataset

__all__ = [
    "COMPOSITE_KINDS",
    "SMIC_KIND",
    "SMIC_REFUSAL",
    "DatasetFormat",
    "build_composite_dataset",
    "dataset_format",
]
