"""Ensembling model scores (paper Table 4): mean pooling, max pooling and a random forest.

All functions take a list of score matrices (videos, classes) from different models.

The random forest works on (video, class) pairs: its features are the models' scores for the
pair (plus their mean and max), its target is the label, and its output probability (the share of
trees voting "positive", i.e. the mode for a threshold of 0.5) is the ensemble score. Only each
video's candidate classes (the union of the models' top ``k``) are scored; others get 0. The forest
must be fitted on videos other than those it scores: :func:`random_forest_crossfit` does that by
k-fold cross-fitting over the evaluation videos.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from affectlens.errors import ShapeError

__all__ = ["mean_ensemble", "max_ensemble", "RandomForestEnsemble", "random_forest_crossfit"]


def _stack(scores: Sequence[np.ndarray]) -> np.ndarray:
    if not scores:
        raise ShapeError("an ensemble needs at least one score matrix")
    shapes = {np.shape(s) for s in scores}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ShapeError(f"score matrices must share one (videos, classes) shape, got {sorted(shapes)}")
    return np.stack([np.asarray(s, np.float32) for s in scores])  # (M, N, C)


def mean_ensemble(scores: Sequence[np.ndarray]) -> np.ndarray:
    """Mean pooling: each class's score is the mean over models."""
    return _stack(scores).mean(0)


def max_ensemble(scores: Sequence[np.ndarray]) -> np.ndarray:
    """Max pooling: each class's score is the maximum over models."""
    return _stack(scores).max(0)


def _candidates(stack: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of each video's candidate classes (union over models of their top k)."""
    m, n, c = stack.shape
    k = min(k, c)
    mask = np.zeros((n, c), bool)
    for s in stack:
        top = np.argpartition(s, c - k, axis=1)[:, -k:]
        np.put_along_axis(mask, top, True, axis=1)
    return np.nonzero(mask)


def _pair_features(stack: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    s = stack[:, rows, cols].T  # (pairs, M)
    return np.concatenate([s, s.mean(1, keepdims=True), s.max(1, keepdims=True)], axis=1)


class RandomForestEnsemble:
    """Random forest over (video, class) pairs; the paper builds 1000 trees."""

    def __init__(self, n_estimators: int = 1000, top_k: int = 20, max_depth: int | None = 12,
                 seed: int = 0, n_jobs: int = 1):
        self.n_estimators, self.top_k, self.max_depth = n_estimators, top_k, max_depth
        self.seed, self.n_jobs = seed, n_jobs

    def fit(self, scores: Sequence[np.ndarray], labels: np.ndarray) -> "RandomForestEnsemble":
        from sklearn.ensemble import RandomForestClassifier

        stack = _stack(scores)
        rows, cols = _candidates(stack, self.top_k)
        y = np.asarray(labels)[rows, cols] > 0
        self.forest = RandomForestClassifier(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                             min_samples_leaf=5, random_state=self.seed, n_jobs=self.n_jobs)
        self.forest.fit(_pair_features(stack, rows, cols), y)
        self._single_class = len(self.forest.classes_) == 1
        return self

    def predict(self, scores: Sequence[np.ndarray]) -> np.ndarray:
        stack = _stack(scores)
        rows, cols = _candidates(stack, self.top_k)
        out = np.zeros(stack.shape[1:], np.float32)
        if self._single_class:
            out[rows, cols] = float(self.forest.classes_[0])
            return out
        proba = self.forest.predict_proba(_pair_features(stack, rows, cols))[:, 1]
        # break the forest's many exact ties with a tiny share of the mean score
        out[rows, cols] = proba + 1e-4 * stack[:, rows, cols].mean(0)
        return out


def random_forest_crossfit(scores: Sequence[np.ndarray], labels: np.ndarray, folds: int = 2,
                           seed: int = 0, **kw) -> np.ndarray:
    """Out-of-fold random-forest scores: fit on the other folds' videos, score this fold."""
    stack = _stack(scores)
    n = stack.shape[1]
    fold = np.random.default_rng(seed).permutation(n) % folds
    out = np.zeros(stack.shape[1:], np.float32)
    for f in range(folds):
        train, test = fold != f, fold == f
        rf = RandomForestEnsemble(seed=seed, **kw).fit(list(stack[:, train]), np.asarray(labels)[train])
        out[test] = rf.predict(list(stack[:, test]))
    return out
