"""The two-group label a run classifies: a participants.tsv column and its two values (config section ``label``).

The paper's label is sex (``sex``: ``M`` positive, ``F`` negative, named male / female); any binary column of a
participants table works the same way (``group``: ``patient`` / ``control``). Positive is class 1: P(positive) is
what models predict, what Table 2 scores and what occlusion's "correct class" is measured against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # an annotation only: per-subject jobs import this module without pandas
    import pandas as pd


@dataclass(frozen=True)
class Label:
    column: str = "sex"
    positive: str = "M"
    negative: str = "F"
    positive_name: str = "male"
    negative_name: str = "female"

    @classmethod
    def from_config(cls, section: Mapping | None) -> Label:
        """The label of config section ``label`` (None or {} = sex, M vs F)."""
        section = dict(section or {})
        names = {k: v for k, v in (section.pop("names", None) or {}).items() if v}
        label = cls(**section)
        if label.column != "sex" or label.values != ("M", "F"):  # not the default: the values name the groups
            names = {"positive": label.positive, "negative": label.negative, **names}
        return cls(**section, **{f"{k}_name": v for k, v in names.items()})

    @property
    def values(self) -> tuple[str, str]:
        return (self.positive, self.negative)

    @property
    def names(self) -> tuple[str, str]:
        return (self.positive_name, self.negative_name)

    @property
    def title(self) -> str:
        """What the label is, for captions: 'sex' or 'patient vs control'."""
        return "sex" if self.column == "sex" else f"{self.positive_name} vs {self.negative_name}"

    @property
    def both(self) -> str:
        """'both sexes' or 'both groups (patient and control)', for messages."""
        return "both sexes" if self.column == "sex" else f"both groups ({self.positive_name} and {self.negative_name})"

    def name_of(self, value: str) -> str:
        return {self.positive: self.positive_name, self.negative: self.negative_name}[value]

    def encode(self, values: pd.Series | np.ndarray) -> np.ndarray:
        """1 for the positive value, 0 otherwise."""
        return (np.asarray(values).astype(str) == self.positive).astype(int)

    def normalise(self, value: object) -> str | None:
        """``value`` as one of the two label values (case-insensitive, stripped), or None if it is neither."""
        text = str(value).strip()
        for candidate in self.values:
            if text.casefold() == candidate.casefold():
                return candidate
        return None


SEX = Label()
