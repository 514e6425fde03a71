"""CNN-BiLSTM / CNN-only / BiLSTM-only: shapes, the video path, and that a tiny model learns."""
from __future__ import annotations

import pytest
import torch

from affectlens.training import count_parameters
from affectlens.expression.model import (
    AttentionPool,
    ExpressionConfig,
    build_model,
    expression_compact,
    expression_tiny,
)

VARIANTS = ("cnn_bilstm", "cnn", "bilstm")


@pytest.mark.parametrize("variant", VARIANTS)
def test_shapes(variant):
    torch.manual_seed(0)
    net = build_model(expression_tiny(variant=variant)).eval()
    x = torch.randn(3, 1, 24, 24)
    assert net(x).shape == (3, 7)
    feats = net.forward_features(x)
    assert feats.ndim == 2 and net.forward_head(feats).shape == (3, 7)
    assert net.forward_video(torch.randn(2, 5, 1, 24, 24)).shape == (2, 7)


def test_cnn_bilstm_reads_the_feature_map_row_by_row():
    net = build_model(expression_tiny()).eval()
    x = torch.randn(2, 1, 24, 24)
    fmap = net.cnn_features(x)                       # (2, 16, 6, 6)
    seq = net.to_sequence(x)                         # (2, 36, 16)
    assert seq.shape == (2, fmap.shape[2] * fmap.shape[3], fmap.shape[1])
    assert torch.equal(seq[:, 1], fmap[:, :, 0, 1]) and torch.equal(seq[:, fmap.shape[3]], fmap[:, :, 1, 0])


def test_video_of_one_frame_is_the_image_model():
    net = build_model(expression_tiny()).eval()
    x = torch.randn(4, 1, 24, 24)
    torch.testing.assert_close(net.forward_video(x[:, None]), net(x))
    # with several frames the BiLSTM reads them in order: reversing time changes the answer
    clip = torch.randn(1, 4, 1, 24, 24)
    assert not torch.allclose(net.forward_video(clip), net.forward_video(clip.flip(1)))


def test_shipped_size_fits_the_package_budget():
    net = build_model(expression_compact())
    assert count_parameters(net) * 4 < 20e6       # fp32 state_dict well under 20 MB
    with pytest.raises(ValueError, match="variant"):
        ExpressionConfig(variant="transformer")


def test_attention_pool_is_a_convex_weighting_of_the_sequence():
    torch.manual_seed(0)
    pool = AttentionPool(6, 4)
    seq = torch.randn(3, 5, 6)
    w = pool.weights(seq)
    assert w.shape == (3, 5) and torch.allclose(w.sum(1), torch.ones(3)) and (w > 0).all()
    torch.testing.assert_close(pool(seq), (w[..., None] * seq).sum(1))
    same = seq[:, :1].expand(3, 5, 6)                # a constant sequence pools to itself
    torch.testing.assert_close(pool(same), seq[:, 0])


def test_complete_model_reads_the_map_before_the_last_pool():
    """--no-last-pool: the BiLSTM reads a map twice as wide and high; attention and the feature-
    mapping layer change the head, not the convolutions' parameters."""
    base = build_model(expression_compact())
    full = build_model(expression_compact(pool="attention", last_pool=False, feature_map=32)).eval()
    x = torch.randn(2, 1, 40, 40)
    assert base.to_sequence(x).shape == (2, 4, 128) and full.to_sequence(x).shape == (2, 25, 128)
    assert full(x).shape == (2, 7) and full.forward_video(torch.randn(2, 3, 1, 40, 40)).shape == (2, 7)
    assert sum(p.numel() for p in full.cnn.parameters()) == sum(p.numel() for p in base.cnn.parameters())
    assert full.head[1].out_features == 32
    with pytest.raises(ValueError, match="pool"):
        ExpressionConfig(pool="max")


@pytest.mark.parametrize("variant,extra", [(v, {}) for v in VARIANTS]
                         + [("cnn_bilstm", {"pool": "attention", "last_pool": False, "feature_map": 16})])
def test_tiny_model_learns_a_tiny_task(variant, extra):
    """Bright band in the top vs the bottom half (with noise): each variant must fit it."""
    torch.manual_seed(0)
    n = 128
    y = torch.randint(0, 2, (n,))
    x = torch.randn(n, 1, 24, 24) * 0.5
    x[y == 0, :, 3:8] += 2.0
    x[y == 1, :, 16:21] += 2.0
    net = build_model(expression_tiny(variant=variant, num_classes=2, stage_dropout=0.0, head_dropout=0.0, **extra))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    assert (net(x).argmax(1) == y).float().mean() > 0.95


def test_ensemble_checkpoint_averages_its_members_probabilities(tmp_path):
    from affectlens.expression.model import ExpressionEnsemble
    from affectlens.expression.predict import load_model
    from affectlens.expression.recipe import combine
    from affectlens.training import load_checkpoint, save_checkpoint

    cfg = expression_tiny()
    nets, paths = [], []
    for seed in (0, 1):
        torch.manual_seed(seed)
        nets.append(build_model(cfg).eval())
        paths.append(save_checkpoint(tmp_path / f"net{seed}.pt", nets[-1], cfg, epoch=3, public_test_acc=0.5))
    ens = load_model(combine(paths, tmp_path / "pair.pt"))
    assert isinstance(ens, ExpressionEnsemble) and len(ens.members) == 2
    x, clip = torch.randn(4, 1, 24, 24), torch.randn(2, 3, 1, 24, 24)
    with torch.no_grad():
        want = (torch.softmax(nets[0](x), 1) + torch.softmax(nets[1](x), 1)) / 2
        want_video = (torch.softmax(nets[0].forward_video(clip), 1) + torch.softmax(nets[1].forward_video(clip), 1)) / 2
        torch.testing.assert_close(torch.softmax(ens(x), 1), want)
        torch.testing.assert_close(torch.softmax(ens.forward_video(clip), 1), want_video)
    assert not torch.allclose(want, torch.softmax(nets[0](x), 1))  # the members really differ
    # an ensemble grows by a net: its members join one by one, each weighing a third
    torch.manual_seed(2)
    nets.append(build_model(cfg).eval())
    third = save_checkpoint(tmp_path / "net2.pt", nets[-1], cfg, epoch=5, public_test_acc=0.6)
    triple = combine([tmp_path / "pair.pt", third], tmp_path / "triple.pt")
    ens3 = load_model(triple)
    assert len(ens3.members) == 3
    assert [s["epoch"] for s in load_checkpoint(triple)["extra"]["sources"]] == [3, 3, 5]
    with torch.no_grad():
        want3 = sum(torch.softmax(n(x), 1) for n in nets) / 3
        torch.testing.assert_close(torch.softmax(ens3(x), 1), want3)


def test_combine_mixes_widths_and_variants_but_refuses_a_different_input(tmp_path):
    from affectlens.errors import DataError
    from affectlens.expression.model import ExpressionEnsemble
    from affectlens.expression.predict import load_model
    from affectlens.expression.recipe import combine
    from affectlens.training import save_checkpoint

    torch.manual_seed(0)
    cfgs = [expression_tiny(), expression_tiny(variant="cnn", channels=(12, 24))]
    nets = [build_model(c).eval() for c in cfgs]
    paths = [save_checkpoint(tmp_path / f"{i}.pt", n, c) for i, (n, c) in enumerate(zip(nets, cfgs))]
    ens = load_model(combine(paths, tmp_path / "mixed.pt"))
    assert isinstance(ens, ExpressionEnsemble) and [m.cfg for m in ens.members] == cfgs
    x = torch.randn(3, 1, 24, 24)
    with torch.no_grad():
        want = (torch.softmax(nets[0](x), 1) + torch.softmax(nets[1](x), 1)) / 2
        torch.testing.assert_close(torch.softmax(ens(x), 1), want)
    c = save_checkpoint(tmp_path / "c.pt", build_model(expression_tiny(image_size=32)), expression_tiny(image_size=32))
    with pytest.raises(DataError, match="input differs"):
        combine([paths[0], c], tmp_path / "bad.pt")
