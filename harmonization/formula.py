"""Fixed effects from a formula: ``"time + age + sex + dx*time"`` (R/lme4 notation).

Terms are joined by ``+``; ``a:b`` is an interaction and ``a*b`` means ``a + b + a:b``.
Categorical variables (named, or non-numeric) get treatment contrasts against their first
level in sorted order, as R's factors do; an interaction is the product of its variables'
columns. The encoding (levels) is fixed when fitted and replayed on new data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trialprep.harmonization.design import CovariateTerm, HarmonizationError, build_terms

_NAME = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*")


def parse_formula(formula: str) -> list[tuple[str, ...]]:
    """The formula's effects, main effects first: each a tuple of variable names."""
    effects: list[tuple[str, ...]] = []
    for part in (p.strip() for p in formula.split("+")):
        if not part:
            raise HarmonizationError(f"empty term in formula {formula!r}")
        if "*" in part:
            names = [n.strip() for n in part.split("*")]
            found = [(n,) for n in names] + [tuple(names)]
        else:
            found = [tuple(n.strip() for n in part.split(":"))]
        for effect in found:
            bad = [n for n in effect if not _NAME.fullmatch(n)]
            if bad:
                raise HarmonizationError(f"formula {formula!r}: {bad[0]!r} is not a column "
                                         "name (terms are joined by +, : and *)")
            if len(set(effect)) != len(effect):
                raise HarmonizationError(f"formula {formula!r}: {':'.join(effect)} repeats "
                                         "a variable")
            if effect not in effects and tuple(reversed(effect)) not in effects:
                effects.append(effect)
    return sorted(effects, key=len)  # stable: main effects, then interactions


@dataclass
class FixedEffects:
    """The encoded fixed effects of a formula (without intercept)."""

    formula: str
    effects: list[tuple[str, ...]]
    terms: list[CovariateTerm]  # one per variable

    @classmethod
    def fit(cls, formula: str, data: pd.DataFrame,
            categorical: Sequence[str] = ()) -> FixedEffects:
        effects = parse_formula(formula)
        variables = list(dict.fromkeys(v for e in effects for v in e))
        missing = [v for v in variables if v not in data.columns]
        if missing:
            raise HarmonizationError(f"formula variable(s) {missing} not among the columns "
                                     f"{list(data.columns)}")
        cat = [v for v in variables if v in categorical
               or not pd.api.types.is_numeric_dtype(data[v])]
        return cls(formula, effects, build_terms(data[variables].reset_index(drop=True), cat))

    @property
    def variables(self) -> list[str]:
        return [t.name for t in self.terms]

    @property
    def column_names(self) -> list[str]:
        by_name = {t.name: t.column_names for t in self.terms}
        names = []
        for effect in self.effects:
            combos = [""]
            for v in effect:
                combos = [f"{c}:{n}" if c else n for c in combos for n in by_name[v]]
            names += combos
        return names

    def matrix(self, data: pd.DataFrame) -> np.ndarray:
        """The n x p fixed-effect columns of ``data`` (no intercept)."""
        missing = [v for v in self.variables if v not in data.columns]
        if missing:
            raise HarmonizationError(f"column(s) {missing} of the model's formula missing")
        frame = data.reset_index(drop=True)
        encoded = {t.name: t.encode(frame[t.name]) for t in self.terms}
        cols = []
        for effect in self.effects:
            block = encoded[effect[0]]
            for v in effect[1:]:
                other = encoded[v]
                block = (block[:, :, None] * other[:, None, :]).reshape(len(frame), -1)
            cols.append(block)
        return np.column_stack(cols) if cols else np.zeros((len(frame), 0))

    def to_dict(self) -> dict:
        return {"formula": self.formula, "effects": [list(e) for e in self.effects],
                "terms": [t.to_dict() for t in self.terms]}

    @classmethod
    def from_dict(cls, d: Mapping) -> FixedEffects:
        return cls(d["formula"], [tuple(e) for e in d["effects"]],
                   [CovariateTerm.from_dict(t) for t in d["terms"]])
