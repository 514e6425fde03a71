"""metrics.image: SSIM against pytorch-msssim, and masked SSIM against a hand-computed mean."""
import numpy as np
import pytest
import torch

from affectlens.metrics.image import WIN, masked_ssim, ssim, ssim_map


def test_ssim_map_mean_equals_pytorch_msssim():
    from pytorch_msssim import ssim as reference

    torch.manual_seed(0)
    a = torch.rand(2, 3, 40, 32)
    b = (a + 0.1 * torch.randn_like(a)).clamp(0, 1)
    want = reference(a, b, data_range=1.0, size_average=False)
    assert torch.allclose(ssim_map(a, b).mean(dim=(1, 2, 3)), want, atol=1e-5)
    assert torch.allclose(ssim(a, b), want) and ssim_map(a, b).shape == (2, 3, 30, 22)
    assert torch.allclose(ssim(a, a), torch.ones(2), atol=1e-6) and (ssim(a, b) < 0.99).all()


def test_masked_ssim_averages_the_map_inside_the_mask_only():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 32, 3), dtype=np.uint8)
    b = a.copy()
    b[:, 16:] = rng.integers(0, 256, (40, 16, 3), dtype=np.uint8)     # the right half differs
    left = np.zeros((40, 32), bool)
    left[:, :8] = True                                                # windows that see only the left half
    assert masked_ssim(a, b, left) == pytest.approx(1.0, abs=1e-6)
    right = ~left
    to_t = lambda im: torch.as_tensor(im).permute(2, 0, 1)[None].float() / 255.0  # noqa: E731
    m = ssim_map(to_t(a), to_t(b))[0].mean(0).numpy()
    r = WIN // 2
    assert masked_ssim(a, b, right) == pytest.approx(float(m[right[r:-r, r:-r]].mean()), rel=1e-6)
    assert masked_ssim(a, b, right) < 0.5
    assert np.isnan(masked_ssim(a, b, np.zeros((40, 32), bool)))
