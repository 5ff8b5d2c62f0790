"""The FACS vocabulary: AU number, name, facial region, muscle and visible movement.

The table is data (``facs_aus.csv`` beside this file), read by :func:`facs_table`. Text answers
(``au_llm.answers``) name AUs with it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class FacsAU:
    """One Action Unit of the FACS table.

    Attributes:
        au: AU number.
        name: FACS name, lower case (``inner brow raiser``).
        region: ``upper`` or ``lower`` face.
        muscle: Muscle(s) that produce it.
        movement: The visible movement, as a clause (``the brows are drawn down and together``).
    """

    au: int
    name: str
    region: str
    muscle: str
    movement: str


def facs_table() -> dict[int, FacsAU]:
    """Every AU of the table, keyed by number.

    Raises:
        ValueError: If the table has a duplicate AU or name (the vocabulary must be one-to-one).
    """
    text = resources.files("au_llm.data").joinpath("facs_aus.csv").read_text(encoding="utf-8")
    table: dict[int, FacsAU] = {}
    for row in csv.DictReader(text.splitlines()):
        entry = FacsAU(
            int(row["au"]),
            row["name"].strip().lower(),
            row["region"],
            row["muscle"],
            row["movement"],
        )
        if entry.au in table:
            raise ValueError(f"facs_aus.csv: AU {entry.au} appears twice")
        table[entry.au] = entry
    names = [entry.name for entry in table.values()]
    if len(set(names)) != len(names):
        raise ValueError("facs_aus.csv: two AUs share a name")
    return table


def facs_entries(aus: list[int] | tuple[int, ...]) -> list[FacsAU]:
    """The table rows of ``aus``, in that order.

    Raises:
        ValueError: If an AU is not in the table.
    """
    table = facs_table()
    missing = [au for au in aus if au not in table]
    if missing:
        raise ValueError(f"AU(s) {missing} are not in the FACS table (au_llm/data/facs_aus.csv)")
    return [table[au] for au in aus]
