"""CompCNN-Sub-SVM and CompCNN-Comb-SVM: FC2 features of three nets → one linear SVM (paper 001, §3.2).

The three CompCNNs of one operator (comparison after block 1, 2 and 3) are trained first; their
second-FC-layer outputs are concatenated and a linear SVM (scikit-learn ``LinearSVC``, on
standardised features) is fitted on the **training fold only**. For ``predict`` a sigmoid (Platt)
maps the SVM margin to a probability; it is fitted on the same training features, so it is
over-confident on small training sets.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Sequence

import numpy as np
import torch

ENSEMBLES = {"CompCNN-Sub-SVM": ("CompCNN-Sub@1", "CompCNN-Sub@2", "CompCNN-Sub@3"),
             "CompCNN-Comb-SVM": ("CompCNN-Comb@1", "CompCNN-Comb@2", "CompCNN-Comb@3")}


def concat_features(features: Dict[str, np.ndarray], members: Sequence[str]) -> np.ndarray:
    """Concatenate the members' FC2 features in a fixed order: (N, Σ D_i)."""
    return np.concatenate([np.asarray(features[m], dtype=np.float64) for m in members], axis=1)


@dataclass
class LinearSVMEnsemble:
    """A linear SVM over concatenated FC2 features of ``members`` (the nets' names, in order).
    Predicts 0 = posed, 1 = spontaneous."""

    C: float = 1.0
    members: tuple = ()
    mean: np.ndarray = field(default=None, repr=False)
    scale: np.ndarray = field(default=None, repr=False)
    coef: np.ndarray = field(default=None, repr=False)
    intercept: float = 0.0
    platt: tuple = (1.0, 0.0)
    constant: int = -1  # a training fold with a single class predicts that class

    def fit(self, x: np.ndarray, y: np.ndarray, seed: int = 0) -> "LinearSVMEnsemble":
        from sklearn.linear_model import LogisticRegression
        from sklearn.svm import LinearSVC

        x, y = np.asarray(x, np.float64), np.asarray(y)
        self.mean = x.mean(0)
        self.scale = x.std(0)
        self.scale[self.scale < 1e-8] = 1.0
        classes = np.unique(y)
        if len(classes) < 2:
            self.constant = int(classes[0])
            self.coef, self.intercept = np.zeros(x.shape[1]), 0.0
            return self
        self.constant = -1
        svm = LinearSVC(C=self.C, max_iter=5000, random_state=seed).fit((x - self.mean) / self.scale, y)
        self.coef, self.intercept = svm.coef_[0].copy(), float(svm.intercept_[0])
        margin = self.decision_function(x)[:, None]
        lr = LogisticRegression(C=1.0).fit(margin, y)
        self.platt = (float(lr.coef_[0, 0]), float(lr.intercept_[0]))
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean) / self.scale) @ self.coef + self.intercept

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.constant >= 0:
            return np.full(len(x), self.constant, dtype=np.int64)
        return (self.decision_function(x) > 0).astype(np.int64)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(N, 2): P(posed), P(spontaneous)."""
        if self.constant >= 0:
            p = np.full(len(x), float(self.constant))
        else:
            a, b = self.platt
            p = 1.0 / (1.0 + np.exp(-(a * self.decision_function(x) + b)))
        return np.stack([1 - p, p], axis=1)

    def state(self) -> dict:
        """Tensors and plain numbers only, so a ``weights_only=True`` load can read it back."""
        return {"mean": torch.as_tensor(self.mean), "scale": torch.as_tensor(self.scale),
                "coef": torch.as_tensor(self.coef), "intercept": float(self.intercept),
                "platt": list(self.platt), "constant": int(self.constant), "C": float(self.C),
                "members": list(self.members)}

    @classmethod
    def from_state(cls, d: dict) -> "LinearSVMEnsemble":
        return cls(C=float(d["C"]), members=tuple(d["members"]), mean=np.asarray(d["mean"]),
                   scale=np.asarray(d["scale"]), coef=np.asarray(d["coef"]), intercept=float(d["intercept"]),
                   platt=tuple(d["platt"]), constant=int(d["constant"]))
