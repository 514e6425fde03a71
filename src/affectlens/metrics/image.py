"""Image similarity: SSIM for whole images, per pixel, and inside a mask.

``ssim`` is pytorch-msssim's (11-px Gaussian window, σ 1.5, valid convolution, K1 0.01, K2 0.03),
the one the paper's reconstruction loss names. ``ssim_map`` is written here because that library
returns only means: the map is the same formula before averaging (its mean equals ``ssim``, which
``tests/metrics/test_image.py`` checks), and ``masked_ssim`` averages it over the window centres
inside a region, e.g. the face or the context around it.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

WIN, WIN_SIGMA, K1, K2 = 11, 1.5, 0.01, 0.03


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image SSIM ``(B,)`` of two ``(B, C, H, W)`` batches (pytorch-msssim; differentiable)."""
    from pytorch_msssim import ssim as reference

    return reference(x, y, data_range=data_range, size_average=False)


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-pixel SSIM ``(B, C, H-10, W-10)`` with pytorch-msssim's window and constants."""
    coords = torch.arange(WIN, dtype=torch.float32, device=x.device) - WIN // 2
    g = torch.exp(-(coords**2) / (2 * WIN_SIGMA**2))
    g = g / g.sum()
    c = x.shape[1]
    gh, gw = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def filt(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, gh, groups=c), gw, groups=c)

    x, y = x.float(), y.float()
    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))


def masked_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM of two ``(H, W, 3)`` uint8 images over the window centres where ``mask`` (H, W) is
    true; NaN when the mask holds no window centre."""
    def to_t(im: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(im).permute(2, 0, 1)[None].float() / 255.0  # (1, 3, H, W)

    m = ssim_map(to_t(a), to_t(b))[0].mean(0).numpy()  # (H-10, W-10)
    r = WIN // 2
    sel = np.asarray(mask, bool)[r:-r, r:-r]
    return float(m[sel].mean()) if sel.any() else float("nan")
