"""DiffCNN and CompCNN (comparison-layer CNNs) for posed vs spontaneous expressions (paper 001).

Both nets see 44 × 44 grey faces. DiffCNN reads one image, ``apex − onset``. CompCNN runs onset and
apex through the *same* convolution blocks (one module, called twice, so the two paths share every
kernel and bias), compares the two feature maps after block ``compare_at`` ∈ {1, 2, 3} and carries
on with one path:

    block_i = conv(k×k, same padding) → ReLU → 2×2 max-pool → dropout (0.05, 0.15, 0.25)
    compare: Sub  Z = apex − onset
             Comb Z^r = Σ_k α_rk · apex^k + Σ_k β_rk · onset^k    (α = I, β = −I at init, i.e. Sub)
    then ReLU (the paper's max(0, ·)), the remaining blocks, FC1 → ReLU → dropout 0.5,
    FC2 → ReLU → dropout 0.25, a 2-way linear output (softmax in the loss).

The dropout of block i is applied once, after the comparison, so that the two paths are not
compared through two different dropout masks. ``features()`` returns FC2's activations — the
features the -SVM ensembles concatenate. The paper's Figures 1–2 (kernel sizes, widths) did not
survive in our copy of the text; the widths below are our choice and are documented as such.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
from torch import nn

CLASSES = ("posed", "spontaneous")
INPUT_SIZE = 44
POOL_DROPOUT = (0.05, 0.15, 0.25)
FC_DROPOUT = (0.5, 0.25)


@dataclass(frozen=True)
class SpontaneityNetConfig:
    """One net of the paper. ``kind`` is "diff" (DiffCNN) or "comp" (CompCNN)."""

    kind: str = "comp"
    operator: str = "sub"            # "sub" | "comb" (CompCNN only)
    compare_at: int = 1              # 1..3: after which conv+pool block the paths meet
    channels: Tuple[int, int, int] = (32, 64, 128)
    kernels: Tuple[int, int, int] = (5, 3, 3)
    fc: Tuple[int, int] = (512, 256)
    pool_dropout: Tuple[float, float, float] = POOL_DROPOUT
    fc_dropout: Tuple[float, float] = FC_DROPOUT
    num_classes: int = 2
    input_size: int = INPUT_SIZE

    @property
    def name(self) -> str:
        if self.kind == "diff":
            return "DiffCNN"
        return f"CompCNN-{self.operator.capitalize()}@{self.compare_at}"


def spontaneity_paper(kind: str = "comp", operator: str = "sub", compare_at: int = 1) -> SpontaneityNetConfig:
    """Widths for a GPU-sized run on USTC-NVIE (kernels 5-3-3, channels 32-64-128, FC 512-256)."""
    return SpontaneityNetConfig(kind=kind, operator=operator, compare_at=compare_at)


def spontaneity_small(kind: str = "comp", operator: str = "sub", compare_at: int = 1) -> SpontaneityNetConfig:
    """A CPU size for the synthetic benchmark: channels 16-32-32, FC 128-64."""
    return SpontaneityNetConfig(kind=kind, operator=operator, compare_at=compare_at,
                                channels=(16, 32, 32), fc=(128, 64))


def spontaneity_tiny(kind: str = "comp", operator: str = "sub", compare_at: int = 1) -> SpontaneityNetConfig:
    """For tests: channels 8-16-16, FC 32-16."""
    return SpontaneityNetConfig(kind=kind, operator=operator, compare_at=compare_at,
                                channels=(8, 16, 16), fc=(32, 16))


SIZES = {"paper": spontaneity_paper, "small": spontaneity_small, "tiny": spontaneity_tiny}

# The seven nets of Table 1 (the two -SVM rows are built from three of them each).
NET_SPECS = (("diff", "sub", 1),
             ("comp", "sub", 1), ("comp", "sub", 2), ("comp", "sub", 3),
             ("comp", "comb", 1), ("comp", "comb", 2), ("comp", "comb", 3))


def table_configs(size: str = "small") -> list[SpontaneityNetConfig]:
    """The seven single-net configs of Table 1 at a named size."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(SIZES)}")
    return [SIZES[size](kind, op, at) for kind, op, at in NET_SPECS]


class ComparisonLayer(nn.Module):
    """Z = f(apex, onset) followed by ReLU. Sub has no parameters; Comb is a 1×1 linear map of both."""

    def __init__(self, channels: int, operator: str = "sub"):
        super().__init__()
        if operator not in ("sub", "comb"):
            raise ValueError(f"operator must be 'sub' or 'comb', not {operator!r}")
        self.operator = operator
        if operator == "comb":
            # α acts on the apex map, β on the onset map; both C × C, no bias (the paper has none).
            self.alpha = nn.Parameter(torch.eye(channels))
            self.beta = nn.Parameter(-torch.eye(channels))

    def forward(self, apex: torch.Tensor, onset: torch.Tensor) -> torch.Tensor:
        """apex, onset: (B, C, H, W) → (B, C, H, W)."""
        if self.operator == "sub":
            z = apex - onset
        else:
            z = (torch.einsum("rk,bkhw->brhw", self.alpha, apex)
                 + torch.einsum("rk,bkhw->brhw", self.beta, onset))
        return torch.relu(z)


class SpontaneityNet(nn.Module):
    """DiffCNN or CompCNN. ``forward(onset, apex)`` with (B, 1, 44, 44) tensors returns (B, 2) logits."""

    def __init__(self, config: SpontaneityNetConfig):
        super().__init__()
        if config.kind not in ("diff", "comp"):
            raise ValueError(f"kind must be 'diff' or 'comp', not {config.kind!r}")
        if config.compare_at not in (1, 2, 3):
            raise ValueError(f"compare_at must be 1, 2 or 3, not {config.compare_at}")
        self.config = config
        c_in = (1,) + tuple(config.channels[:2])
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(ci, co, k, padding=k // 2), nn.ReLU(inplace=True), nn.MaxPool2d(2))
            for ci, co, k in zip(c_in, config.channels, config.kernels))
        self.dropouts = nn.ModuleList(nn.Dropout(p) for p in config.pool_dropout)
        at = config.compare_at if config.kind == "comp" else 0
        self.compare = ComparisonLayer(config.channels[at - 1], config.operator) if at else None
        side = config.input_size
        for _ in range(3):
            side //= 2
        flat = config.channels[2] * side * side
        self.fc1 = nn.Linear(flat, config.fc[0])
        self.fc2 = nn.Linear(config.fc[0], config.fc[1])
        self.fc_dropouts = nn.ModuleList(nn.Dropout(p) for p in config.fc_dropout)
        self.head = nn.Linear(config.fc[1], config.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal weights, zero biases: PyTorch's default init shrinks the signal through five
        ReLU layers and the nets sit at chance for many epochs on the small, low-contrast inputs."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.head.weight, std=0.01)

    def _block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.blocks[i](x)

    def forward_conv(self, onset: torch.Tensor, apex: torch.Tensor) -> torch.Tensor:
        """(B, 1, 44, 44) × 2 → (B, C3, 5, 5) after the three blocks (and the comparison)."""
        if self.compare is None:  # DiffCNN: the pixel difference image is the single input
            x = apex - onset
            for i in range(3):
                x = self.dropouts[i](self._block(i, x))
            return x
        a, o = apex, onset
        at = self.config.compare_at
        for i in range(at):
            a, o = self._block(i, a), self._block(i, o)  # the same module: shared weights
            if i < at - 1:
                a, o = self.dropouts[i](a), self.dropouts[i](o)
        x = self.dropouts[at - 1](self.compare(a, o))
        for i in range(at, 3):
            x = self.dropouts[i](self._block(i, x))
        return x

    def forward_features(self, onset: torch.Tensor, apex: torch.Tensor) -> torch.Tensor:
        """FC2's output (after ReLU, before its dropout): (B, fc[1])."""
        x = self.forward_conv(onset, apex).flatten(1)  # (B, C3·5·5)
        x = self.fc_dropouts[0](torch.relu(self.fc1(x)))
        return torch.relu(self.fc2(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(B, fc[1]) → (B, 2) logits."""
        return self.head(self.fc_dropouts[1](features))

    def forward(self, onset: torch.Tensor, apex: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(onset, apex))

    @torch.no_grad()
    def features(self, onset: torch.Tensor, apex: torch.Tensor) -> torch.Tensor:
        """FC2 features in eval mode (dropout off): (B, fc[1])."""
        was = self.training
        self.eval()
        out = self.forward_features(onset, apex)
        self.train(was)
        return out

