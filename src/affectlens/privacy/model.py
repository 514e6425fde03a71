"""The privacy room's networks (paper 004) and its one checkpoint reader.

* ``AttributeNet`` — stage 1, the 40-attribute face classifier (``attributes_paper``: raw ResNet-50);
* ``ReconNet`` — stage 2, the U-Net that rebuilds a face from 68 landmark heat-maps, the image
  context and 40 attribute planes (``recon_paper``: about the paper's 45 M parameters);
* ``PersonRecognizer`` — §3.5's AlexNet-style recogniser that attacks the anonymized faces.

Each has a frozen config and builders (tiny for tests, small for a CPU, paper); the training
recipes live in ``attributes.py``, ``reconstruct.py`` and ``attack.py``, and ``load_model`` reads
any of the three back from a checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from affectlens.config import from_dict
from affectlens.errors import DataError
from affectlens.faces.landmarks import N_LANDMARKS
from affectlens.training import load_checkpoint


# ---------------------------------------------------------------------------- stage 1: attributes
@dataclass(frozen=True)
class AttributeConfig:
    backbone: Literal["small", "resnet18", "resnet50"] = "small"
    widths: tuple[int, ...] = (16, 32, 64, 128)  # small CNN only
    n_attributes: int = 40
    image_hw: tuple[int, int] = (109, 89)  # the CelebA mirror's size (H, W)
    dropout: float = 0.2


def attributes_small(**kw) -> "AttributeNet":
    return AttributeNet(AttributeConfig(backbone="small", **kw))


def attributes_tiny(**kw) -> "AttributeNet":
    """For tests: a few thousand parameters."""
    return AttributeNet(AttributeConfig(backbone="small", widths=(8, 16), **kw))


def attributes_resnet18(**kw) -> "AttributeNet":
    return AttributeNet(AttributeConfig(backbone="resnet18", **kw))


def attributes_paper(**kw) -> "AttributeNet":
    """The paper's raw ResNet-50 (no pretrained weights) at CelebA's official 218 × 178."""
    kw.setdefault("image_hw", (218, 178))
    return AttributeNet(AttributeConfig(backbone="resnet50", **kw))


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class AttributeNet(nn.Module):
    """``(B, 3, H, W)`` normalised RGB → ``(B, 40)`` attribute logits."""

    def __init__(self, config: AttributeConfig):
        super().__init__()
        self.config = config
        if config.backbone == "small":
            layers, cin = [conv_bn_relu(3, config.widths[0], stride=2)], config.widths[0]
            for w in config.widths:
                layers += [conv_bn_relu(cin, w), conv_bn_relu(w, w), nn.MaxPool2d(2, ceil_mode=True)]
                cin = w
            self.backbone = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
            width = cin
        else:
            import torchvision

            net = getattr(torchvision.models, config.backbone)(weights=None)
            width = net.fc.in_features
            net.fc = nn.Flatten()  # the output layer removed; avgpool → flatten stays
            self.backbone = net
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(width, config.n_attributes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)  # (B, D)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(feats))  # (B, 40)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(x))


def as_tensor(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    """An array (any strides) as a tensor; a tensor stays where it is (CPU or GPU)."""
    return a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))


def to_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 → ``(B, 3, H, W)`` float in about [-1, 1], on the images' device."""
    return as_tensor(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (B, 3, H, W)


# ------------------------------------------------------------------------- stage 2: reconstruction
IN_HW = (128, 64)
N_ATTR = 40
IN_CHANNELS = N_LANDMARKS + 3 + N_ATTR  # 111


@dataclass(frozen=True)
class ReconConfig:
    widths: tuple[int, ...] = (16, 32, 64, 128)
    in_channels: int = IN_CHANNELS
    hw: tuple[int, int] = IN_HW
    sigma: float = 1.5  # landmark heat-map width in pixels of the 128 × 64 grid
    mask_margin: float = 1.08
    # mean landmark positions of the training crops (68 × (x, y), in ``template_hw`` pixels): stage 3
    # warps any face onto this template so it looks like the crops the net was trained on.
    template_hw: tuple[int, int] = (109, 89)
    template_points: tuple[float, ...] = ()


def recon_tiny(**kw) -> "ReconNet":
    return ReconNet(ReconConfig(widths=(4, 8), **kw))


def recon_small(**kw) -> "ReconNet":
    return ReconNet(ReconConfig(widths=(16, 32, 64, 128), **kw))


def recon_paper(**kw) -> "ReconNet":
    return ReconNet(ReconConfig(widths=(64, 128, 256, 512, 1024), **kw))


class ConvBlock2d(nn.Sequential):
    """conv 3×3 ('same' padding) → batch-norm → ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ReconNet(nn.Module):
    """``(B, 111, 128, 64)`` → ``(B, 3, 128, 64)`` RGB in [0, 1]."""

    def __init__(self, config: ReconConfig):
        super().__init__()
        self.config = config
        w = config.widths
        self.encoders = nn.ModuleList()
        cin = config.in_channels
        for width in w[:-1]:
            self.encoders.append(nn.Sequential(ConvBlock2d(cin, width), ConvBlock2d(width, width)))
            cin = width
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = nn.Sequential(ConvBlock2d(cin, w[-1]), ConvBlock2d(w[-1], w[-1]))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.decoders = nn.ModuleList()
        cin = w[-1]
        for width in reversed(w[:-1]):
            self.decoders.append(nn.Sequential(ConvBlock2d(cin + width, width), ConvBlock2d(width, width),
                                               ConvBlock2d(width, width)))
            cin = width
        self.to_rgb = nn.Conv2d(cin, 3, 1)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Encoder: the bottleneck ``(B, C, H/2^L, W/2^L)`` and the skips, finest first."""
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
            x = self.pool(x)
        return self.bottleneck(x), skips

    def forward_head(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Decoder: up-sample, concatenate the skip, three blocks; then RGB."""
        for dec, skip in zip(self.decoders, reversed(skips)):
            x = dec(torch.cat([self.up(x), skip], dim=1))  # (B, C_skip + C, h, w)
        return torch.sigmoid(self.to_rgb(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(*self.forward_features(x))


# ------------------------------------------------------------------------ the paper's recogniser
@dataclass(frozen=True)
class RecognizerConfig:
    n_classes: int = 20
    widths: tuple[int, ...] = (48, 128, 192, 192, 128)  # AlexNet's five convolutions, halved
    dense: tuple[int, ...] = (1024, 1024)  # AlexNet's two hidden dense layers (4096 in the original)
    extra_dense: tuple[int, ...] = (512, 256, 256, 128, 128, 64)  # the paper's 6 added dense layers
    image_hw: tuple[int, int] = (128, 64)
    dropout: float = 0.5


RECOGNIZER_SIZES = {
    "tiny": dict(widths=(8, 16, 16, 16, 16), dense=(64,), extra_dense=(32, 32)),
    "small": {},  # AlexNet halved at 128 × 64 (RecognizerConfig's defaults): the CPU size
    # the paper's: AlexNet at 227 × 227 (widths 96-256-384-384-256, dense 4096 × 2) + 6 dense layers
    "paper": dict(widths=(96, 256, 384, 384, 256), dense=(4096, 4096), extra_dense=(2048, 1024, 512, 256, 128, 64),
                  image_hw=(227, 227)),
}


def recognizer_config(size: str, **kw) -> RecognizerConfig:
    """The recogniser's config at a named size (``tiny``, ``small``, ``paper``)."""
    if size not in RECOGNIZER_SIZES:
        raise ValueError(f"recognizer size must be one of {', '.join(RECOGNIZER_SIZES)}, not {size!r}")
    return RecognizerConfig(**{**RECOGNIZER_SIZES[size], **kw})


def recognizer_tiny(**kw) -> "PersonRecognizer":
    return PersonRecognizer(recognizer_config("tiny", **kw))


def recognizer_small(**kw) -> "PersonRecognizer":
    return PersonRecognizer(recognizer_config("small", **kw))


def recognizer_paper(**kw) -> "PersonRecognizer":
    """AlexNet at 227 × 227 (widths 96-256-384-384-256, dense 4096 × 2) + 6 dense layers."""
    return PersonRecognizer(recognizer_config("paper", **kw))


class PersonRecognizer(nn.Module):
    """``(B, 3, H, W)`` → ``(B, n_classes)`` logits. AlexNet layout: 11×11/4 conv, pool, 5×5 conv,
    pool, three 3×3 convs, pool, then dense layers with dropout."""

    def __init__(self, config: RecognizerConfig):
        super().__init__()
        self.config = config
        w = config.widths
        stride = 4 if config.image_hw[0] >= 200 else 2  # small inputs keep more resolution
        self.features = nn.Sequential(
            nn.Conv2d(3, w[0], 11, stride, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(w[0], w[1], 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(w[1], w[2], 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w[2], w[3], 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w[3], w[4], 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.AdaptiveAvgPool2d((3, 3)), nn.Flatten())
        layers, cin = [], w[4] * 9
        for i, width in enumerate(config.dense + config.extra_dense):
            layers += [nn.Dropout(config.dropout) if i < len(config.dense) else nn.Identity(),
                       nn.Linear(cin, width), nn.ReLU(inplace=True)]
            cin = width
        self.dense = nn.Sequential(*layers)
        self.head = nn.Linear(cin, config.n_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.features(x))  # (B, D)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ------------------------------------------------------------------------------------ checkpoints
def load_model(path: str | Path, kind: type[nn.Module] | None = None) -> nn.Module:
    """The privacy room's one checkpoint reader: the stage-1 classifier, the stage-2 U-Net or the
    paper's recogniser (told apart by their model config), in eval mode. ``kind`` (one of the three
    classes) turns any other net into a one-line error naming the file."""
    ck = load_checkpoint(path)
    config = ck["model"]
    families = {"backbone": (AttributeNet, AttributeConfig), "in_channels": (ReconNet, ReconConfig),
                "extra_dense": (PersonRecognizer, RecognizerConfig)}
    net_cls, cfg_cls = next((v for k, v in families.items() if k in config), (None, None))
    if net_cls is None or (kind is not None and net_cls is not kind):
        found = net_cls.__name__ if net_cls else "no privacy net"
        raise DataError(path, f"holds {found}, expected {kind.__name__ if kind else 'a privacy net'}")
    net = net_cls(from_dict(cfg_cls, config, source=path))
    try:
        net.load_state_dict(ck["state_dict"])
    except RuntimeError as e:
        raise DataError(path, f"weights do not fit its config ({str(e).splitlines()[0][:120]})") from None
    return net.eval()
