"""CNN-BiLSTM facial-expression classifier (paper 002) and its CNN-only / BiLSTM-only comparisons.

One family, three variants chosen by ``ExpressionConfig.variant``:

* ``"cnn_bilstm"`` (the paper's model): convolution blocks (conv → batch-norm → ReLU, twice, then
  max-pool → dropout) turn a 48×48 grey face into a feature map ``(B, C, h, w)``; the map is read
  cell by cell (raster order) as a sequence of ``h·w`` position embeddings by a bidirectional LSTM;
  the BiLSTM outputs are pooled over the sequence — averaged (``pool="mean"``) or weighted by an
  additive attention layer (``pool="attention"``, the paper's attention) — optionally mapped by a
  fully connected feature-mapping layer (``feature_map`` > 0), and classified.
  ``last_pool=False`` drops the last stage's max-pool, so the BiLSTM reads a map twice as wide and
  high (5×5 = 25 steps for a 40-px input instead of 2×2 = 4) at the same convolution cost.
  For a video, each frame's crop of one face goes through the CNN and the BiLSTM reads the
  position embeddings of all frames one after another: ``(B, T·h·w, C)``. With ``T = 1`` this is
  exactly the still-image model, so the same weights serve images and face tracks.
* ``"cnn"``: the same convolution blocks, flattened, then fully connected layers.
* ``"bilstm"``: no convolutions; the 48 pixel rows of the image are the BiLSTM's sequence.

All variants take ``(B, 1, H, W)`` float images normalised by :func:`normalise` and return logits.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

VARIANTS = ("cnn_bilstm", "cnn", "bilstm")
POOLS = ("mean", "attention")


@dataclass(frozen=True)
class ExpressionConfig:
    variant: str = "cnn_bilstm"
    num_classes: int = 7
    image_size: int = 48               # side of the square grey input the network sees
    channels: tuple[int, ...] = (64, 128, 256, 512)   # one conv stage per entry, each ends in a 2×2 max-pool
    convs_per_stage: int = 2
    stage_dropout: float = 0.1         # dropout after each stage's max-pool
    lstm_hidden: int = 256             # per direction
    lstm_layers: int = 1
    fc_hidden: int = 256               # CNN-only head width
    head_dropout: float = 0.4
    pool: str = "mean"                 # how BiLSTM outputs become one vector: mean | attention
    last_pool: bool = True             # False: no max-pool after the last stage (a 4× longer sequence)
    feature_map: int = 0               # width of the feature-mapping layer before the classifier; 0 = none
    pixel_mean: float = 0.5            # inputs are (x/255 - mean) / std
    pixel_std: float = 0.25

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {self.pool!r}")
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))


def expression_tiny(**kw) -> ExpressionConfig:
    """A few-thousand-parameter model for tests."""
    return ExpressionConfig(**{"channels": (8, 16), "convs_per_stage": 1, "lstm_hidden": 16,
                               "fc_hidden": 32, "image_size": 24, **kw})


def expression_compact(**kw) -> ExpressionConfig:
    """The shipped model: 4 stages 16-32-64-128 on 40×40 crops, BiLSTM 2×128 over the 2×2 map.

    About 20 M multiply-adds per face: sized for training on two shared CPU cores."""
    return ExpressionConfig(**{"channels": (16, 32, 64, 128), "lstm_hidden": 128, "fc_hidden": 128,
                               "image_size": 40, "stage_dropout": 0.05, "head_dropout": 0.3, **kw})


def expression_small(**kw) -> ExpressionConfig:
    """4 stages 32-64-128-256 on 40×40 crops, BiLSTM 2×192 over the 2×2 map (CPU-sized)."""
    return ExpressionConfig(**{"channels": (32, 64, 128, 256), "lstm_hidden": 192, "image_size": 40,
                               "stage_dropout": 0.05, "head_dropout": 0.3, **kw})


def expression_base(**kw) -> ExpressionConfig:
    """The wider 64-128-256-512 model (about 4× the compute of ``expression_small``)."""
    return ExpressionConfig(**{"channels": (64, 128, 256, 512), "lstm_hidden": 256, "image_size": 44, **kw})


def normalise(images_uint8: torch.Tensor, cfg: ExpressionConfig) -> torch.Tensor:
    """uint8 ``(B, 1, H, W)`` → float ``(B, 1, H, W)`` as the model expects."""
    return (images_uint8.float() / 255.0 - cfg.pixel_mean) / cfg.pixel_std


def _stage(c_in: int, c_out: int, n_convs: int, dropout: float, pool: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_convs):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False),
                   nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    layers += [nn.MaxPool2d(2) if pool else nn.Identity(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class AttentionPool(nn.Module):
    """Additive attention over a sequence: ``a = softmax_L(v·tanh(W h))``, output ``Σ a·h``.

    ``forward(seq (B, L, D))`` → ``(B, D)``; ``weights(seq)`` → ``(B, L)`` for inspection."""

    def __init__(self, dim: int, hidden: int | None = None):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden or dim), nn.Tanh(), nn.Linear(hidden or dim, 1, bias=False))

    def weights(self, seq: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.score(seq).squeeze(-1), dim=1)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bl,bld->bd", self.weights(seq), seq)


class ExpressionNet(nn.Module):
    """See the module docstring. ``forward`` takes ``(B, 1, H, W)``; ``forward_video`` ``(B, T, 1, H, W)``."""

    def __init__(self, cfg: ExpressionConfig = ExpressionConfig()):
        super().__init__()
        self.cfg = cfg
        chans = (1,) + cfg.channels
        if cfg.variant != "bilstm":
            last = len(cfg.channels) - 1
            self.cnn = nn.Sequential(*[_stage(chans[i], chans[i + 1], cfg.convs_per_stage, cfg.stage_dropout,
                                              pool=cfg.last_pool or i < last)
                                       for i in range(len(cfg.channels))])
        side = self.feature_side()
        if cfg.variant == "cnn":
            self.fc = nn.Sequential(nn.Flatten(), nn.Dropout(cfg.head_dropout),
                                    nn.Linear(cfg.channels[-1] * side * side, cfg.fc_hidden),
                                    nn.BatchNorm1d(cfg.fc_hidden), nn.ReLU(inplace=True))
            width = cfg.fc_hidden
        else:
            lstm_in = cfg.channels[-1] if cfg.variant == "cnn_bilstm" else cfg.image_size
            self.lstm = nn.LSTM(lstm_in, cfg.lstm_hidden, num_layers=cfg.lstm_layers,
                                batch_first=True, bidirectional=True)
            width = 2 * cfg.lstm_hidden
            if cfg.pool == "attention":
                self.attention = AttentionPool(width, cfg.lstm_hidden)
        mapping: list[nn.Module] = []
        if cfg.feature_map and cfg.variant != "cnn":
            mapping = [nn.Dropout(cfg.head_dropout), nn.Linear(width, cfg.feature_map), nn.ReLU(inplace=True)]
            width = cfg.feature_map
        self.head = nn.Sequential(*mapping, nn.Dropout(cfg.head_dropout), nn.Linear(width, cfg.num_classes))

    def feature_side(self) -> int:
        """Side of the last feature map (the CNN halves the input once per stage)."""
        if self.cfg.variant == "bilstm":
            return self.cfg.image_size
        return self.cfg.image_size // (2 ** (len(self.cfg.channels) - (not self.cfg.last_pool)))

    def cnn_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` → feature map ``(B, C, h, w)``."""
        return self.cnn(x)

    def to_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` → the BiLSTM's input sequence ``(B, L, D)``."""
        if self.cfg.variant == "bilstm":
            return x[:, 0]                                   # (B, H rows, W pixels)
        fmap = self.cnn_features(x)                          # (B, C, h, w)
        return fmap.flatten(2).transpose(1, 2)               # (B, h·w, C), row by row

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` → pooled embedding ``(B, D)`` fed to the classifier."""
        if self.cfg.variant == "cnn":
            return self.fc(self.cnn_features(x))
        return self.read_sequence(self.to_sequence(x))

    def read_sequence(self, seq: torch.Tensor) -> torch.Tensor:
        """BiLSTM over ``(B, L, D)`` → its outputs pooled over the sequence ``(B, 2·hidden)``."""
        out, _ = self.lstm(seq)                              # (B, L, 2·hidden)
        return self.attention(out) if self.cfg.pool == "attention" else out.mean(dim=1)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_video(self, frames: torch.Tensor) -> torch.Tensor:
        """One face track ``(B, T, 1, H, W)`` → logits ``(B, K)``.

        CNN-BiLSTM: the BiLSTM reads the per-frame CNN embeddings of all T crops in time order.
        The other variants have no temporal model and average their per-frame logits.
        """
        b, t = frames.shape[:2]
        flat = frames.reshape(b * t, *frames.shape[2:])      # (B·T, 1, H, W)
        if self.cfg.variant != "cnn_bilstm":
            return self(flat).reshape(b, t, -1).mean(dim=1)
        seq = self.to_sequence(flat)                         # (B·T, h·w, C)
        seq = seq.reshape(b, t * seq.shape[1], seq.shape[2])  # (B, T·h·w, C)
        return self.forward_head(self.read_sequence(seq))


class ExpressionEnsemble(nn.Module):
    """Several :class:`ExpressionNet` whose class probabilities are averaged.

    Members may differ in width or variant (``configs``, one per member) but must read the same
    input and predict the same classes (``image_size``, ``pixel_mean``, ``pixel_std``,
    ``num_classes``); ``cfg`` is the first member's, which is all a caller needs to prepare faces.
    ``forward`` / ``forward_video`` return ``log`` of the mean softmax, so a softmax of the output is
    exactly the members' mean probability and the ensemble drops in wherever one net is used.
    """

    def __init__(self, configs: Sequence[ExpressionConfig]):
        super().__init__()
        configs = list(configs)
        if not configs:
            raise ValueError("an ensemble needs at least one member")
        for c in configs[1:]:
            if input_contract(c) != input_contract(configs[0]):
                raise ValueError(f"ensemble members must share image_size, pixel_mean, pixel_std and num_classes: "
                                 f"{input_contract(c)} vs {input_contract(configs[0])}")
        self.cfg, self.configs = configs[0], configs
        self.members = nn.ModuleList(ExpressionNet(c) for c in configs)

    @staticmethod
    def _mean_log_prob(logits: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([torch.softmax(z, dim=1) for z in logits]).mean(0).clamp_min(1e-12).log()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mean_log_prob([m(x) for m in self.members])

    def forward_video(self, frames: torch.Tensor) -> torch.Tensor:
        return self._mean_log_prob([m.forward_video(frames) for m in self.members])


def input_contract(cfg: ExpressionConfig) -> tuple:
    """What a net reads and predicts: ``(image_size, pixel_mean, pixel_std, num_classes)``."""
    return cfg.image_size, cfg.pixel_mean, cfg.pixel_std, cfg.num_classes


def build_model(cfg: ExpressionConfig) -> ExpressionNet:
    return ExpressionNet(cfg)

