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


def test_table4_ensemble_mixes_frame_level_and_video_level_models(tmp_path):
    """A DBoF on synthetic frame-level shards and a MoE on the video-level shards of the same videos,
    joined on the video id (the frame-level shards hold only some of the videos)."""
    import json

    from affectlens.videotag import recipe
    from affectlens.videotag.synth import synth_frame_level, synth_video_level

    shards = synth_video_level(tmp_path / "vl", num_shards=3, videos_per_shard=40, num_classes=6, noise=0.8)
    frames = synth_frame_level(shards, tmp_path / "fl", frames=6, max_videos=100)
    moe = recipe.TrainConfig(epochs=2, batch_size=16, num_workers=0, threads=1)
    dbof = recipe.TrainConfig(model={"kind": "dbof", "projection": 32, "hidden": 16, "samples": 4}, epochs=2,
                              batch_size=16, lr=0.01, num_workers=0, threads=1)
    recipe.train(moe, shards[:2], tmp_path / "moe", shards[2:], log=lambda s: None)
    recipe.train(dbof, frames[:2], tmp_path / "dbof", frames[2:], log=lambda s: None)
    said = []
    res = recipe.run_ensemble([tmp_path / "moe" / "best.pt", tmp_path / "dbof" / "best.pt"], shards[2:],
                              tmp_path / "ens", trees=20, log=said.append, frame_paths=frames[2:])
    assert {"moe", "dbof", "mean pooling", "max pooling", "random forest"} <= set(res)
    assert json.loads((tmp_path / "ens" / "ensemble.json").read_text())["videos"] == 20  # 100 - 2 x 40 in common
    assert said[0] == "20 videos scored by every model (of 40)"
    assert res["moe"]["gap"] > 0.5 and res["mean pooling"]["gap"] > 0.5
    with pytest.raises(Exception, match="frame-level model"):
        recipe.run_ensemble([tmp_path / "dbof" / "best.pt"], shards[2:], tmp_path / "e2", trees=5)
