"""Stage 2 of paper 004: a U-Net that rebuilds the face from landmarks, context and attributes.

Input (111 channels at 128 × 64, H × W, the paper's size after squashing the whole image):
  * 68 landmark heat-maps (one Gaussian per dlib point),
  * the RGB image with the face ellipse blacked out (the image context, 3 channels),
  * 40 attribute planes (all ones where the attribute is present, zeros otherwise).
Network: ``ConvBlock2d`` = conv 3×3 → batch-norm → ReLU; each encoder stack is 2 blocks then a
2×2 max-pool; each decoder stack concatenates the skip, runs 3 blocks, then up-samples; a 1×1
conv and a sigmoid give RGB in [0, 1]. Loss: 1 − SSIM (pytorch-msssim); Adam(2e-5, β1 = 0.5).
``recon_paper()`` (widths 64…1024) has about the paper's 45 M parameters; ``recon_small()`` is the
CPU size.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from affectlens.faces.landmarks import ellipse_mask
from affectlens.files import write_json
from affectlens.media.image import read_image
from affectlens.metrics.image import ssim
from affectlens.privacy.celeba import Arrays, as_batch, celeba_landmarks, load_celeba, load_images, subsample
from affectlens.privacy.model import IN_HW, N_ATTR, ReconConfig, ReconNet, as_tensor, load_model
from affectlens.report.plots import curves_png
from affectlens.training.engine import TrainModule, fit, loader


# ------------------------------------------------------------------------------- the 111 channels
def heatmaps_torch(points: torch.Tensor, hw: tuple[int, int], sigma: float) -> torch.Tensor:
    """``(B, 68, 2)`` (x, y) grid points → ``(B, 68, H, W)`` Gaussians (on the points' device and dtype)."""
    ys = torch.arange(hw[0], dtype=points.dtype, device=points.device).view(1, 1, -1, 1)
    xs = torch.arange(hw[1], dtype=points.dtype, device=points.device).view(1, 1, 1, -1)
    px, py = points[..., 0, None, None], points[..., 1, None, None]  # (B, 68, 1, 1)
    return torch.exp(-((xs - px) ** 2 + (ys - py) ** 2) / (2 * sigma**2))


def build_input(images: np.ndarray, masks: np.ndarray, points: np.ndarray, attrs: np.ndarray,
                sigma: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage-2 input and target from 128 × 64 crops.

    images ``(B, H, W, 3)`` uint8, masks ``(B, H, W)`` {0, 1}, points ``(B, 68, 2)`` in the grid,
    attrs ``(B, 40)`` {0, 1} → (``(B, 111, H, W)`` input, ``(B, 3, H, W)`` target in [0, 1]).
    Arrays or tensors; tensors are used where they are, so training builds the input on its device.
    """
    images, masks, points, attrs = (as_tensor(v) for v in (images, masks, points, attrs))
    b, h, w = masks.shape
    rgb = images.permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W)
    keep = 1.0 - masks.float()[:, None]  # (B, 1, H, W)
    heat = heatmaps_torch(points.float(), (h, w), sigma)
    planes = attrs.float()[:, :, None, None].expand(b, N_ATTR, h, w)
    return torch.cat([heat, rgb * keep, planes], dim=1), rgb


@dataclass
class Stage2Data:
    """Every usable image prepared once at 128 × 64 (uint8 / small arrays)."""

    index: np.ndarray  # (n,) rows of the CelebA index
    images: np.ndarray  # (n, 128, 64, 3) uint8
    masks: np.ndarray  # (n, 128, 64) uint8
    points: np.ndarray  # (n, 68, 2) float32 in the 128 × 64 grid
    attrs: np.ndarray  # (n, 40) uint8


def prepare_crops(images: np.ndarray, points: np.ndarray, hw=IN_HW, margin: float = 1.08):
    """Squash ``(n, H0, W0, 3)`` crops and their points to ``hw``; the ellipse mask is drawn in the
    original geometry and then resized (nearest) so it stays an ellipse over the face."""
    n, h0, w0 = images.shape[:3]
    out_im = np.zeros((n, hw[0], hw[1], 3), np.uint8)
    out_mask = np.zeros((n, hw[0], hw[1]), np.uint8)
    for i in range(n):
        out_im[i] = cv2.resize(images[i], (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
        m = ellipse_mask((h0, w0), points[i], margin)
        out_mask[i] = cv2.resize(m, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)
    scale = np.array([hw[1] / w0, hw[0] / h0], np.float32)
    return out_im, out_mask, (np.asarray(points, np.float32) + 0.5) * scale - 0.5


def prepare_stage2(ds, idx: np.ndarray, points: np.ndarray, found: np.ndarray, margin: float = 1.08) -> Stage2Data:
    """Keep the images of ``idx`` where dlib found a face (the paper filters the rest away)."""
    idx = np.asarray([i for i in idx if found[i]], np.int64)
    h0, w0 = native_hw(ds)
    raw = load_images(ds, idx, (h0, w0))
    ims, masks, pts = prepare_crops(raw, points[idx], IN_HW, margin)
    return Stage2Data(idx, ims, masks, pts, ds.attributes[idx])


def native_hw(ds) -> tuple[int, int]:
    return read_image(ds.path(0)).shape[:2]


# ----------------------------------------------------------------------------------------- recipe
@dataclass(frozen=True)
class ReconTrainConfig:
    data: str = "../shared/data/celeba"
    out: str = "runs/privacy/reconstruct"
    landmark_cache: str | None = None  # default: ~/.cache/affectlens/privacy/
    widths: tuple[int, ...] = (16, 32, 64, 128)
    epochs: int = 4
    batch_size: int = 16
    lr: float = 2e-5
    beta1: float = 0.5
    sigma: float = 1.5
    seed: int = 0
    threads: int = 1
    train_limit: int = 0  # >0: train on the first `train_limit` usable images only (CPU budget)
    eval_limit: int = 0  # >0: also cap val / test (smoke runs)
    fraction: float = 1.0  # share of each split used, its first part (the paper: 0.3)


def template_from(points: np.ndarray) -> tuple[float, ...]:
    """Mean landmark layout of the training crops, flattened for the JSON config."""
    return tuple(float(v) for v in np.asarray(points, np.float64).mean(axis=0).ravel())


def _stage2_splits(cfg: ReconTrainConfig):
    ds = load_celeba(cfg.data, seed=cfg.seed)
    points, found = celeba_landmarks(ds, cfg.landmark_cache)
    data = {}
    for s in ("train", "val", "test"):
        idx = subsample(ds.indices(s), cfg.fraction)
        cap = cfg.train_limit if s == "train" else cfg.eval_limit
        idx = idx[found[idx]][: cap or None]
        data[s] = prepare_stage2(ds, idx, points, found)
    template = template_from(points[data["train"].index])
    return ds, data, template, native_hw(ds)


@torch.no_grad()
def reconstruct_ssim(model: ReconNet, d: Stage2Data, batch_size: int = 64, flip: np.ndarray | None = None) -> np.ndarray:
    """Per-image SSIM of the reconstruction (attributes optionally XOR-flipped by ``flip`` (40,))."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(d.index), batch_size):
        attrs = d.attrs[s:s + batch_size] if flip is None else d.attrs[s:s + batch_size] ^ flip
        x, y = build_input(d.images[s:s + batch_size], d.masks[s:s + batch_size], d.points[s:s + batch_size],
                           attrs, model.config.sigma)
        out.append(ssim(model(x.to(device)), y.to(device)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def context_only_ssim(d: Stage2Data) -> np.ndarray:
    """Baseline: the masked context with the face filled by the context's mean colour."""
    im = d.images.astype(np.float32) / 255.0
    m = d.masks[..., None].astype(np.float32)
    mean = (im * (1 - m)).sum(axis=(1, 2), keepdims=True) / np.maximum((1 - m).sum(axis=(1, 2), keepdims=True), 1)
    filled = im * (1 - m) + mean * m
    to_t = lambda a: torch.as_tensor(a).permute(0, 3, 1, 2)  # noqa: E731  (n, 3, H, W)
    return ssim(to_t(filled), to_t(im)).numpy()


class ReconModule(TrainModule):
    """Stage 2's own: the 111-channel input built on the batch's device from the prepared crops,
    1 − SSIM, Adam(lr, β1) and the validation SSIM (held-out identities) that selects ``best.pt``."""

    monitor, mode = "val_ssim", "max"
    resume_may_change = ("epochs", "threads")

    def __init__(self, cfg: ReconTrainConfig, mcfg: ReconConfig):
        super().__init__(mcfg, cfg, seed=cfg.seed)
        self.model = ReconNet(mcfg)

    def _pair(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return build_input(batch["image"], batch["mask"], batch["points"], batch["attrs"], self.model.config.sigma)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x, y = self._pair(batch)
        loss = 1.0 - ssim(self.model(x), y).mean()  # the paper's 1 − SSIM
        self.record("train_loss", loss, len(x))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        x, y = self._pair(batch)
        self.record("val_ssim", ssim(self.model(x), y).mean(), len(x))

    def configure_optimizers(self):
        c = self.train_config
        return torch.optim.Adam(self.model.parameters(), lr=c.lr, betas=(c.beta1, 0.999))


def stage2_arrays(d: Stage2Data):
    """The prepared crops as an engine dataset (uint8 images and masks: the input is built per batch)."""
    return Arrays(image=d.images, mask=d.masks, points=d.points, attrs=d.attrs)


def train_reconstruct(cfg: ReconTrainConfig, hardware=None, resume: bool = True,
                      progress: bool | None = None) -> dict | None:
    """Fit the U-Net with 1 − SSIM on train identities, select on val, report test SSIM once.

    Trains through the engine into ``cfg.out``; rank 0 adds the test figures to ``metrics.json``
    and draws the curves; other ranks return None."""
    torch.set_num_threads(cfg.threads)
    ds, data, template, native_hw = _stage2_splits(cfg)
    mcfg = ReconConfig(widths=cfg.widths, sigma=cfg.sigma, template_hw=tuple(native_hw), template_points=template)
    res = fit(ReconModule(cfg, mcfg), loader(stage2_arrays(data["train"]), cfg.batch_size, shuffle=True, seed=cfg.seed,
                                             collate_fn=as_batch),
              loader(stage2_arrays(data["val"]), 64, collate_fn=as_batch), out=cfg.out, epochs=cfg.epochs,
              hardware=hardware, resume=resume, progress=progress)
    if not res.is_global_zero:
        return None
    model, test = load_model(res.best_path, ReconNet), data["test"]
    metrics = {**json.loads((res.out / "metrics.json").read_text(encoding="utf-8")),
               "test_ssim": float(reconstruct_ssim(model, test).mean()), "paper_test_ssim": 0.8752,
               "context_only_ssim": float(context_only_ssim(test).mean()),
               "n_train": len(data["train"].index), "n_val": len(data["val"].index), "n_test": len(test.index),
               "n_params": sum(p.numel() for p in model.parameters())}
    write_json(res.out / "metrics.json", metrics)
    curves_png({k: v for k, v in res.history.items() if k != "epoch_seconds"}, res.out / "curves.png")
    return metrics


def load_recon_model(path: str | Path) -> ReconNet:
    """A trained stage-2 U-Net (``best.pt``); any other net is refused in one line."""

    return load_model(path, ReconNet)
