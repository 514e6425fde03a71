"""Stage 2: the 111-channel input, the U-Net, the 1 − SSIM loss and the SSIM map used in evaluation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from affectlens.privacy import reconstruct as R
from affectlens.privacy.celeba import as_batch
from affectlens.privacy import model as PM
from tests.conftest import shared_path


def _batch(b=4, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (b, 128, 64, 3), dtype=np.uint8)
    masks = np.zeros((b, 128, 64), np.uint8)
    masks[:, 40:100, 12:52] = 1
    points = rng.uniform([12, 40], [52, 100], (b, 68, 2)).astype(np.float32)
    attrs = rng.integers(0, 2, (b, 40)).astype(np.uint8)
    return images, masks, points, attrs


def test_input_has_111_channels_in_the_papers_order():
    images, masks, points, attrs = _batch()
    x, y = R.build_input(images, masks, points, attrs)
    assert x.shape == (4, 111, 128, 64) and y.shape == (4, 3, 128, 64)
    heat, rgb, planes = x[:, :68], x[:, 68:71], x[:, 71:]
    peak = heat[1, 5].flatten().argmax().item()  # landmark 5 of image 1 peaks at its point
    assert (peak // 64, peak % 64) == (round(points[1, 5, 1]), round(points[1, 5, 0]))
    assert (rgb[:, :, 40:100, 12:52] == 0).all()  # the face ellipse region is blacked out
    assert torch.allclose(rgb[:, :, :40], y[:, :, :40])  # context kept
    assert torch.equal(planes[:, :, 0, 0], torch.as_tensor(attrs).float())
    assert (planes == planes[:, :, :1, :1]).all()  # each attribute plane is constant


@pytest.mark.parametrize("build,params", [(PM.recon_tiny, None), (PM.recon_small, None),
                                          (PM.recon_paper, (34e6, 35e6))])
def test_unet_shapes(build, params):
    model = build().eval()
    h, w = (128, 64) if params is None else (32, 16)  # the paper net is fully convolutional: keep it cheap
    with torch.no_grad():
        out = model(torch.randn(1, 111, h, w))
        bottleneck, skips = model.forward_features(torch.randn(1, 111, h, w))
    assert out.shape == (1, 3, h, w) and (out >= 0).all() and (out <= 1).all()
    levels = len(model.config.widths) - 1
    assert bottleneck.shape[-2:] == (h >> levels, w >> levels) and len(skips) == levels
    if params:
        assert params[0] < sum(p.numel() for p in model.parameters()) < params[1]


def test_decoder_stacks_have_three_conv_blocks_and_encoders_two():
    model = PM.recon_small()
    assert all(len(d) == 3 and all(isinstance(b, PM.ConvBlock2d) for b in d) for d in model.decoders)
    assert all(len(e) == 2 for e in model.encoders)
    block = model.encoders[0][0]
    assert [type(m).__name__ for m in block] == ["Conv2d", "BatchNorm2d", "ReLU"]


def test_ssim_loss_decreases_on_a_tiny_batch_through_the_engine(tmp_path):
    from affectlens.training.engine import fit, loader
    from affectlens.training.hardware import Hardware

    torch.set_num_threads(1)
    images, masks, points, attrs = _batch(b=2)
    images = np.repeat(np.repeat(images[:, ::8, ::8], 8, 1), 8, 2)  # blocky, learnable in a few steps
    d = R.Stage2Data(np.arange(2), images, masks, points, attrs)
    cfg = R.ReconTrainConfig(out=str(tmp_path), widths=(4, 8), epochs=30, batch_size=2, lr=1e-2)
    module = R.ReconModule(cfg, PM.ReconConfig(widths=(4, 8)))
    res = fit(module, loader(R.stage2_arrays(d), 2, collate_fn=as_batch), loader(R.stage2_arrays(d), 2, collate_fn=as_batch),
              out=tmp_path, epochs=cfg.epochs, hardware=Hardware(accelerator="cpu"), progress=False)
    losses = res.history["train_loss"]
    assert losses[-1] < 0.85 * losses[0] and losses[-1] < min(losses[:10]), losses[::5]
    best = R.load_recon_model(res.best_path)
    assert R.reconstruct_ssim(best, d).mean() == pytest.approx(max(res.history["val_ssim"]), abs=1e-5)


@pytest.mark.shared_data
def test_training_recipe_on_real_celeba(tmp_path):
    data = shared_path("celeba")
    cfg = R.ReconTrainConfig(data=str(data), out=str(tmp_path / "run"), widths=(4, 8), epochs=1, train_limit=16,
                             eval_limit=8, lr=1e-3)
    m = R.train_reconstruct(cfg, progress=False)
    assert m["n_train"] == 16 and m["n_test"] == 8 and 0 < m["test_ssim"] < 1 and 0 < m["context_only_ssim"] < 1
    model = R.load_recon_model(tmp_path / "run" / "best.pt")
    assert len(model.config.template_points) == 136 and model.config.template_hw == (109, 89)
