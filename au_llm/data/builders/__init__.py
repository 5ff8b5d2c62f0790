"""Manifest builders of every dataset: one description each, one builder for all.

Each dataset's label files and folder layout are described by a :class:`DatasetFormat` in
:data:`DATASET_FORMATS` (:mod:`.formats`); :func:`.dataset.build_dataset` reads them all,
through :mod:`.labels` and :mod:`.naming` (label files -> identified rows) and the row loop every
builder shares (:func:`au_llm.data.rows.read_label_clips`).
"""

from au_llm.data.builders.formats import (
    DATASET_FORMATS,
    LONG_KINDS,
    SMIC_KIND,
    SMIC_REFUSAL,
    DatasetFormat,
)

__all__ = [
    "DATASET_FORMATS",
    "LONG_KINDS",
    "SMIC_KIND",
    "SMIC_REFUSAL",
    "DatasetFormat",
]
