"""Protocols: subject-independent folds, error summaries, the SVM ensembles, and learning."""
import numpy as np
import pytest
import torch

from affectlens.spontaneity.ensemble import LinearSVMEnsemble, concat_features
from affectlens.spontaneity.model import spontaneity_tiny
from affectlens.spontaneity.recipe import (METHODS, PAPER_TABLE1, TrainConfig, net_outputs, run_cv,
                                             subject_folds, summarise, table_rows, to_tensor, train_net)


def test_kfold_is_subject_independent_and_covers_everyone():
    subjects = np.repeat([f"S{i}" for i in range(23)], np.arange(23) % 4 + 2)
    folds = subject_folds(subjects, "kfold", 10)
    assert len(folds) == 10
    seen = np.concatenate([te for _, te in folds])
    assert sorted(seen) == list(range(len(subjects)))  # every sample tested exactly once
    for tr, te in folds:
        assert not set(subjects[tr]) & set(subjects[te])
    sizes = [len(te) for _, te in folds]
    assert max(sizes) - min(sizes) <= 5  # groups of near-equal sample counts
    loso = subject_folds(subjects, "loso")
    assert len(loso) == 23 and all(len(set(subjects[te])) == 1 for _, te in loso)
    with pytest.raises(ValueError):
        subject_folds(subjects, "kfold", 30)


def test_summary_is_mean_over_folds_and_seeds_not_best_seed():
    err = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])  # (seeds, folds)
    s = summarise(err, pooled=0.2)
    assert s["mean"] == pytest.approx(20.0)
    assert s["std_folds"] == pytest.approx(100 * np.std([0.2, 0.2, 0.2], ddof=1))
    assert s["std_seeds"] == pytest.approx(100 * np.std([0.2, 0.2], ddof=1))
    assert s["mean"] > 100 * err.mean(1).min() - 1e-9  # not the best seed


def test_svm_ensemble_matches_sklearn_and_uses_only_training_data():
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(0)
    feats = {f"m{i}": rng.normal(size=(60, 4)) for i in range(3)}
    x = concat_features(feats, ["m0", "m1", "m2"])
    y = (x[:, 0] + 0.5 * x[:, 5] > 0).astype(int)
    svm = LinearSVMEnsemble().fit(x[:40], y[:40])
    ref = LinearSVC(C=1.0, max_iter=5000, random_state=0).fit(StandardScaler().fit_transform(x[:40]), y[:40])
    scaler = StandardScaler().fit(x[:40])  # fitted on the training rows only
    np.testing.assert_array_equal(svm.predict(x[40:]), ref.predict(scaler.transform(x[40:])))
    assert np.mean(svm.predict(x[40:]) == y[40:]) >= 0.8
    p = svm.predict_proba(x[40:])
    assert p.shape == (20, 2) and np.allclose(p.sum(1), 1)
    back = LinearSVMEnsemble.from_state(svm.state())
    np.testing.assert_allclose(back.decision_function(x), svm.decision_function(x))
    one = LinearSVMEnsemble().fit(x[:5], np.ones(5, int))  # a single-class fold predicts that class
    assert set(one.predict(x)) == {1}


def _toy_pairs(n, rng):
    """Clearly separable: the apex adds a bright blob at the eyes (spontaneous) or the mouth (posed)."""
    onset = rng.integers(60, 140, size=(n, 44, 44)).astype(np.float32)
    labels = np.arange(n) % 2
    apex = onset.copy()
    for i, y in enumerate(labels):
        r, c = (16, 10 + rng.integers(0, 20)) if y else (32, 12 + rng.integers(0, 16))
        apex[i, r - 3:r + 3, c:c + 8] += 100
    return onset.clip(0, 255).astype(np.uint8), apex.clip(0, 255).astype(np.uint8), labels


def test_a_tiny_net_learns_a_separable_task_through_the_engine(tmp_path):
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    onset, apex, labels = _toy_pairs(80, rng)
    o, a, y = to_tensor(onset), to_tensor(apex), torch.from_numpy(labels)
    net, res = train_net(spontaneity_tiny("comp", "comb", 1), o[:48], a[:48], y[:48],
                         TrainConfig(size="tiny", epochs=10, lr=3e-3), 0, tmp_path, progress=False)
    p, feats = net_outputs(net, o[48:], a[48:])
    history = res.history["train_loss"]
    assert len(history) == 10 and history[-1] < 0.5 * history[0]
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "metrics.csv").is_file()
    assert np.mean((p > 0.5) != labels[48:]) <= 0.1
    assert feats.shape == (32, 16)


def test_run_cv_reports_all_nine_methods():
    from affectlens.spontaneity.synth import synthetic_arrays

    onset, apex, labels, subjects = synthetic_arrays(6, 4, seed=1)
    result = run_cv(onset, apex, labels, subjects, "kfold", 2, (0,), TrainConfig(size="tiny", epochs=1))
    assert set(result["summary"]) == set(METHODS) and result["folds"] == 2
    for m in METHODS:
        assert 0.0 <= result["summary"][m]["mean"] <= 100.0
        assert np.array(result["errors"][m]).shape == (1, 2)
    rows = table_rows(result)
    assert [r[0] for r in rows] == list(METHODS)
    assert rows[-1][1] == f"{PAPER_TABLE1['CompCNN-Comb-SVM'][0]:.2f} / {PAPER_TABLE1['CompCNN-Comb-SVM'][1]:.2f}"


def test_fewer_training_subjects_keeps_folds_subject_independent():
    from affectlens.spontaneity.recipe import _fewer_subjects

    subjects = np.repeat(np.array([f"S{i}" for i in range(8)]), 3)
    for train, test in subject_folds(subjects, "kfold", 2, split_seed=0):
        few = _fewer_subjects(train, subjects, 2, seed=4)
        assert len(np.unique(subjects[few])) == 2 and set(few) <= set(train)
        assert not set(subjects[few]) & set(subjects[test])
        assert np.array_equal(few, _fewer_subjects(train, subjects, 2, seed=4))  # seeded
        assert np.array_equal(_fewer_subjects(train, subjects, 99, seed=4), train)


def test_fig4_curve_cli_end_to_end(tmp_path):
    """`spontaneity curve`: one CV per subject count, curve.json and fig4.png, figures as the CV gives them."""
    import json

    from affectlens.spontaneity.synth import write_synthetic
    from tests.reliability.conftest import invoke

    manifest = write_synthetic(tmp_path / "syn", 6, 3, seed=0, progress=False)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("protocol: kfold\nfolds: 2\nseeds: 1\nsize: tiny\nepochs: 1\nthreads: 1\n")
    r = invoke(["spontaneity", "curve", manifest, "--out", tmp_path / "curve", "--counts", "2,3", "--config", cfg,
                "--accelerator", "cpu"])
    assert r.code == 0, r.err[-600:]
    curve = json.loads((tmp_path / "curve" / "curve.json").read_text())
    assert curve["counts"] == [2, 3] and set(curve["error_percent"]) == set(METHODS)
    assert all(len(v) == 2 and all(0 <= e <= 100 for e in v) for v in curve["error_percent"].values())
    assert (tmp_path / "curve" / "fig4.png").stat().st_size > 1000
    runs = json.loads((tmp_path / "curve" / "subjects2" / "runs" / "seed0" / "fold00" / "fold.json").read_text())
    assert runs  # each count trained its own folds
