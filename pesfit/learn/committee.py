"""A committee of fits whose spread estimates the error of their mean.

``kind="linear"`` (the default, fast): one :class:`~pesfit.models.LinearPIPModel`
chooses degree, Morse range and ridge by cross-validation on all the data;
the members are refits with those hyperparameters on bootstrap resamples.
``kind="pipnn"``: PIP-NN networks from different random initialisations on
all the data.  The committee predicts like a pesfit model (so
:class:`pesfit.ase.PESCalculator` can run dynamics on its mean).
"""
from __future__ import annotations

import numpy as np

from ..data import Dataset

__all__ = ["Committee"]

KINDS = ("linear", "pipnn")


class Committee:
    """Bootstrap linear PIP fits or a PIP-NN ensemble.

    Parameters
    ----------
    kind : {"linear", "pipnn"}
    n_members : int
    degree : int or None
        Polynomial degree (None: by cross-validation, linear only).
    model_params : dict
        Further hyperparameters of the member models.
    random_state : int

    Attributes
    ----------
    model_ : ModelBase
        Fit on all the data (linear) or the first member (pipnn): the model
        a run delivers.
    members_ : list of ModelBase
    molecule_ : Molecule
    """

    def __init__(self, *, kind: str = "linear", n_members: int = 5, degree=None, model_params=None,
                 random_state: int = 0):
        self.kind = kind
        self.n_members = n_members
        self.degree = degree
        self.model_params = model_params
        self.random_state = random_state

    def fit(self, data: Dataset, *, progress=None) -> "Committee":
        from ..models import LinearPIPModel, PIPNNModel

        if self.kind not in KINDS:
            raise ValueError(f"unknown committee kind {self.kind!r}; choose from {list(KINDS)}")
        if self.n_members < 2:
            raise ValueError(f"a committee needs at least 2 members, got {self.n_members}")
        params = dict(self.model_params or {})
        rng = np.random.default_rng(self.random_state)
        n = data.n_structures
        if self.kind == "linear":
            params.setdefault("cv_folds", max(2, min(4, n // 3)))  # early designs are small
            self.model_ = LinearPIPModel(degree=self.degree, random_state=self.random_state, **params).fit(data)
            hp = self.model_.hyperparameters_
            fixed = {**params, "degree": hp["degree"], "morse_a": hp["morse_a"], "ridge": hp["ridge"]}
            self.members_ = []
            for k in range(self.n_members):
                idx = rng.integers(0, n, n)
                self.members_.append(LinearPIPModel(**fixed).fit(data.subset(idx)))
                if progress is not None:
                    progress(k + 1, self.n_members, "committee member")
        else:
            if self.degree is not None:
                params.setdefault("degree", self.degree)
            self.members_ = []
            for k in range(self.n_members):
                self.members_.append(PIPNNModel(random_state=self.random_state + k, **params).fit(data))
                if progress is not None:
                    progress(k + 1, self.n_members, "committee member")
            self.model_ = self.members_[0]
        self.molecule_ = self.model_.molecule_
        self.e_min_ = self.model_.e_min_
        return self

    def _check_fitted(self):
        if not hasattr(self, "members_"):
            raise ValueError("this Committee is not fitted yet; call fit()")

    def predict_all(self, R, forces: bool = False):
        """Every member's energies [eV] of shape (n_members, n) (and forces [eV/Å])."""
        self._check_fitted()
        out = [m.predict(R, forces=forces) for m in self.members_]
        if forces:
            return np.array([o[0] for o in out]), np.array([o[1] for o in out])
        return np.array(out)

    def predict(self, R, forces: bool = False):
        """Committee mean: energies [eV] (and forces [eV/Å]), shaped like a model's ``predict``."""
        if forces:
            E, F = self.predict_all(R, forces=True)
            return E.mean(axis=0), F.mean(axis=0)
        return self.predict_all(R).mean(axis=0)

    def mean_and_spread(self, R):
        """Mean energy [eV] and committee standard deviation [eV] of structures ``R`` (n, N, 3)."""
        E = self.predict_all(np.asarray(R, dtype=np.float64))
        return E.mean(axis=0), E.std(axis=0, ddof=1)
