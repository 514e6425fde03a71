"""Mean / max / random-forest ensembles of score matrices."""
from __future__ import annotations

import numpy as np
import pytest

from affectlens.errors import ShapeError
from affectlens.metrics.multilabel import gap
from affectlens.videotag import ensemble as E


def test_mean_and_max():
    a = np.array([[0.2, 0.8], [0.5, 0.1]])
    b = np.array([[0.6, 0.4], [0.3, 0.3]])
    np.testing.assert_allclose(E.mean_ensemble([a, b]), [[0.4, 0.6], [0.4, 0.2]])
    np.testing.assert_allclose(E.max_ensemble([a, b]), [[0.6, 0.8], [0.5, 0.3]])
    with pytest.raises(ShapeError):
        E.mean_ensemble([a, b[:1]])


def test_random_forest_learns_which_model_to_trust():
    rng = np.random.default_rng(0)
    y = rng.random((400, 30)) < 0.1
    good = np.clip(y * 0.6 + rng.random(y.shape) * 0.5, 0, 1)  # informative
    noise = rng.random(y.shape)  # uninformative
    out = E.random_forest_crossfit([noise, good], y, folds=2, n_estimators=30, top_k=10)
    assert out.shape == y.shape
    assert gap(out, y) > gap(E.mean_ensemble([noise, good]), y)
    assert gap(out, y) > 0.8
