"""Model shapes, the MoE's logit identity, and that tiny models learn a tiny multi-label task."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from affectlens.videotag import models as M
from affectlens.videotag.recipe import Split, TrainConfig, fit, predict_scores

torch.set_num_threads(1)


def test_moe_logit_is_logit_of_mixture():
    torch.manual_seed(0)
    head = M.MoEHead(6, 4, 3)
    x = torch.randn(5, 6)
    gate = torch.softmax(head.gate(x).view(5, 4, 4), -1)
    p = (gate[..., :3] * torch.sigmoid(head.expert(x).view(5, 4, 3))).sum(-1)
    torch.testing.assert_close(torch.sigmoid(head(x)), p, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cfg,width", [(M.LogisticConfig(input_dim=12, num_classes=5), 12),
                                       (M.MoEConfig(input_dim=12, num_classes=5, num_experts=3), 12),
                                       (M.MLPConfig(input_dim=12, num_classes=5, hidden=7), 7),
                                       (M.MLPConfig(input_dim=12, num_classes=5, hidden=7, num_experts=2), 7)])
def test_video_level_shapes(cfg, width):
    model = M.build_model(cfg)
    x = torch.randn(4, 12)
    assert model(x).shape == (4, 5) and model.forward_features(x).shape == (4, width)
    M.init_prior(model, torch.full((5,), 0.1))  # heads start at the label prior (MoE: up to its random gates)
    zero = torch.sigmoid(model.eval().forward_head(torch.zeros(1, width)))
    exact = isinstance(model.head, torch.nn.Linear)
    torch.testing.assert_close(zero, torch.full((1, 5), 0.1), atol=1e-5 if exact else 0.03, rtol=1e-4)


@pytest.mark.parametrize("cfg", [M.dbof_tiny(input_dim=12, num_classes=5), M.lstm_tiny(input_dim=12, num_classes=5),
                                 M.dbof_tiny(input_dim=12, num_classes=5, pooling="average")])
def test_frame_level_shapes_and_padding(cfg):
    model = M.build_model(cfg).eval()
    x = torch.randn(3, 10, 12)
    lengths = torch.tensor([10, 4, 1])
    out = model(x, lengths)
    assert out.shape == (3, 5) and torch.isfinite(out).all()
    x2 = x.clone()
    x2[1, 4:] = 99.0  # padding beyond the valid length must not matter
    torch.testing.assert_close(model(x2, lengths)[1], out[1])


def test_sample_frames_stay_inside_valid_length():
    lengths = torch.tensor([1, 5, 300])
    for training in (True, False):
        idx = M.sample_frames(lengths, 30, training)
        assert idx.shape == (3, 30) and (idx >= 0).all() and (idx < lengths[:, None]).all()


def test_named_sizes_match_table4():
    assert M.moe_a().num_experts == 8 and M.moe_b().num_experts == 32
    b = M.dbof_b()
    assert (b.projection, b.hidden, b.num_experts, b.samples) == (16384, 2048, 16, 60)
    assert (M.lstm_a().cells, M.lstm_a().layers, M.lstm_b().cells, M.lstm_b().layers) == (1024, 2, 512, 4)
    assert M.config_from_dict({"kind": "moe", "num_experts": 5, "input_dim": 3}) == M.MoEConfig(input_dim=3, num_experts=5)


def _task(frame_level: bool, n=160, d=16, c=6, seed=0):
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(c, d)).astype(np.float32)
    y = rng.random((n, c)) < 0.25
    y[np.arange(n), rng.integers(0, c, n)] = True
    x = (y.astype(np.float32) @ protos) + 0.3 * rng.normal(size=(n, d)).astype(np.float32)
    if not frame_level:
        return Split(list(range(n)), x, y)
    t = 6
    frames = x[:, None, :] + 0.3 * rng.normal(size=(n, t, d)).astype(np.float32)
    return Split(list(range(n)), frames, y, np.full(n, t))


@pytest.mark.parametrize("cfg,frame_level", [
    (M.LogisticConfig(input_dim=16, num_classes=6), False),
    (M.MoEConfig(input_dim=16, num_classes=6, num_experts=2), False),
    (M.MLPConfig(input_dim=16, num_classes=6, hidden=32, dropout=0.2), False),
    (M.dbof_tiny(input_dim=16, num_classes=6), True),
    (M.lstm_tiny(input_dim=16, num_classes=6), True)])
def test_tiny_models_learn(cfg, frame_level):
    from affectlens.metrics.multilabel import gap

    torch.manual_seed(0)
    train, test = _task(frame_level), _task(frame_level, n=80, seed=0)
    model = M.build_model(cfg)
    classes = np.arange(6)
    before = gap(predict_scores(model, test, classes, 6), test.y)
    hist = fit(model, train, classes, TrainConfig(epochs=12, batch_size=32, lr=2e-2), None, log=lambda s: None)
    after = gap(predict_scores(model, test, classes, 6), test.y)
    assert hist.history["train_loss"][-1] < hist.history["train_loss"][0]
    assert after > 0.9 and after > before + 0.1, (before, after)
