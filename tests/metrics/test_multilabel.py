"""YouTube-8M metrics: the starter code's reference values (to 1e-6) and hand-computed cases."""
from __future__ import annotations

import json

import numpy as np
import pytest

from affectlens.errors import ShapeError
from affectlens.metrics.multilabel import (all_metrics, average_precision_per_class, gap, hit_at_one,
                                           mean_average_precision, perr)
from tests.conftest import REPO

REFERENCE = REPO.parent / "shared" / "reference" / "yt8m_metrics.json"


@pytest.fixture(scope="module")
def reference():
    if not REFERENCE.is_file():
        pytest.skip(f"reference values not available: {REFERENCE} is missing")
    ref = json.loads(REFERENCE.read_text())
    ns: dict = {}
    exec(ref["generator"], ns)  # the file's own generator rebuilds the exact input arrays
    return ref, ns


@pytest.mark.shared_data
def test_matches_starter_code_reference(reference):
    ref, ns = reference
    got = all_metrics(ns["predictions"], ns["labels"], top_k=ref["inputs"]["top_k"])
    for key, want in ref["values"].items():
        assert abs(got[key] - want) < 1e-6, (key, got[key], want)


@pytest.mark.shared_data
def test_matches_starter_code_reference_random_scores(reference):
    ref, ns = reference
    pred, y = ns["make_arrays"](ref["inputs"]["N"], seed=ref["inputs"]["seed"])
    got = all_metrics(pred, y.astype(np.int64))
    for key, want in ref["values_random_scores"].items():
        assert abs(got[key] - want) < 1e-6, (key, got[key], want)


def test_gap_hand_computed():
    # top-2 per video pooled: (0.9,+) (0.8,-) (0.7,+) (0.3,-); 3 positives overall (one never in a top 2)
    p = np.array([[0.9, 0.8, 0.1], [0.7, 0.3, 0.2]])
    y = np.array([[1, 0, 1], [1, 0, 0]])
    assert gap(p, y, top_k=2) == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert gap(p, y, top_k=3) == pytest.approx((1 / 1 + 2 / 3 + 3 / 6) / 3)


def test_map_hand_computed():
    p = np.array([[0.9, 0.8, 0.1], [0.7, 0.3, 0.2]])
    y = np.array([[1, 0, 1], [1, 0, 0]])
    ap = average_precision_per_class(p, y, top_k=2)
    # class 0: both videos rank it, both positive → 1; class 1: no positive → nan;
    # class 2: one positive, never in a top 2 → 0
    assert ap[0] == pytest.approx(1.0) and np.isnan(ap[1]) and ap[2] == 0.0
    assert mean_average_precision(p, y, top_k=2) == pytest.approx(0.5)


def test_hit_at_one_and_perr_hand_computed():
    p = np.array([[0.9, 0.8, 0.1, 0.0], [0.2, 0.7, 0.6, 0.1], [0.1, 0.2, 0.3, 0.4]])
    y = np.array([[0, 1, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    assert hit_at_one(p, y) == pytest.approx(1 / 3)
    # video 0: top 2 = {0, 1} → 1/2; video 1: top 1 = {1} → 1; video 2: no labels → 0
    assert perr(p, y) == pytest.approx((0.5 + 1 + 0) / 3)


def test_perr_ignores_non_positive_scores():
    p = np.array([[0.0, -1.0, -2.0]])
    y = np.array([[1, 0, 0]])
    assert perr(p, y) == 0.0


def test_bool_and_int_labels_agree():
    rng = np.random.default_rng(0)
    p = rng.random((50, 30))
    y = rng.random((50, 30)) < 0.1
    assert all_metrics(p, y) == all_metrics(p, y.astype(np.int32))


def test_shape_mismatch_raises():
    with pytest.raises(ShapeError):
        gap(np.zeros((2, 3)), np.zeros((3, 2)))


def test_perfect_scores():
    y = np.eye(5, dtype=bool)
    p = y.astype(float)
    m = all_metrics(p, y)
    assert m == {"gap": 1.0, "hit_at_one": 1.0, "perr": 1.0, "map": 1.0}


def test_topk_pr_curve_is_the_ranking_of_one_class_and_averages_to_its_ap():
    from affectlens.metrics.multilabel import TopK

    rng = np.random.default_rng(3)
    y = rng.random((60, 5)) < 0.3
    p = np.clip(y * 0.4 + rng.random((60, 5)) * 0.7, 0, 1)
    top = TopK(5, top_k=5).add(p, y)  # every pair kept: the full ranking of each class
    curves = top.pr_curves(range(5))
    for c in range(5):
        precision, recall = curves[c]
        order = np.argsort(-p[:, c], kind="stable")
        tp = np.cumsum(y[order, c])
        np.testing.assert_allclose(precision, tp / np.arange(1, 61))
        np.testing.assert_allclose(recall, tp / y[:, c].sum())
        ap = np.sum(precision * y[order, c]) / y[:, c].sum()  # AP = mean precision at the positives
        assert ap == pytest.approx(top.ap_per_class()[c], abs=1e-9)
    assert recall[-1] == pytest.approx(1.0)

