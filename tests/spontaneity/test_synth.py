"""Synthetic pairs: the paper's §1 cues are really in the pixels, identities differ, the tree is readable."""
import numpy as np

from affectlens.spontaneity.data import read_manifest, load_pairs, scan_ustc_nvie
from affectlens.spontaneity.synth import (Action, generate_pairs, render_face, sample_action, sample_identity,
                                          write_synthetic)


def test_cues_eye_region_moves_more_when_spontaneous_and_posed_is_lopsided():
    rng = np.random.default_rng(0)
    eye_change, lopsided = {0: [], 1: []}, {0: [], 1: []}
    for k in range(40):
        idn = sample_identity(rng)
        y = k % 2
        act = sample_action(rng, "happiness", bool(y), intensity=0.8, difficulty=0.3)
        onset = render_face(idn, act.scaled(0.0), noise=0).astype(float)  # same pose: only the action differs
        apex = render_face(idn, act, noise=0).astype(float)
        d = np.abs(apex - onset)
        eye_change[y].append(d[12:22, 4:40].mean())  # eye band (brows do not move in happiness)
        mouth = d[28:42, 6:38]
        lopsided[y].append(abs(mouth[:, :16].sum() - mouth[:, 16:].sum()) / (mouth.sum() + 1e-6))
    assert np.mean(eye_change[1]) > 2 * np.mean(eye_change[0])
    assert np.mean(lopsided[0]) > 2 * np.mean(lopsided[1])


def test_subjects_have_their_own_identity_and_pairs_are_44px():
    rng = np.random.default_rng(0)
    a, b = sample_identity(rng), sample_identity(rng)
    fa = render_face(a, Action(), noise=0).astype(float)
    fb = render_face(b, Action(), noise=0).astype(float)
    assert fa.shape == (44, 44) and np.abs(fa - fb).mean() > 5
    rows = list(generate_pairs(3, 4, seed=1))
    assert {r["subject"] for r in rows} == {"S001", "S002", "S003"}
    assert sum(r["label"] == "posed" for r in rows) == 6
    assert all(r["onset"].shape == (44, 44) and r["onset"].dtype == np.uint8 for r in rows)


def test_written_tree_and_manifest_agree(tmp_path):
    manifest = write_synthetic(tmp_path / "syn", n_subjects=3, per_subject=2, seed=0)
    rows = read_manifest(manifest)
    scanned, _ = scan_ustc_nvie(tmp_path / "syn")  # the tree is the USTC-NVIE-style layout
    assert len(rows) == len(scanned) == 6
    assert sorted((r.subject, r.label, r.onset.resolve()) for r in rows) == \
        sorted((s.subject, s.label, s.onset.resolve()) for s in scanned)
    onset, apex, labels, subjects = load_pairs(rows)
    assert onset.shape == (6, 44, 44) and set(labels) == {0, 1}
