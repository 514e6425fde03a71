"""Video tagging models of the YouTube-8M starter code, in PyTorch: logistic, mixture of experts,
Deep Bag of Frames and LSTM; a video-level MLP (ours, the best single video-level model here); and the paper's text models, TextCNN (titles) and the keyword
classifier. Every model returns **logits** (B, classes).

Video-level models take ``x`` (B, D) (D = 1024 visual + 128 audio, or any concatenation that
includes text features). Frame-level models take ``x`` (B, T, D) padded frames and ``lengths``
(B,) valid frame counts.

The mixture of experts follows the starter code's ``MoeModel``: per class a softmax gate over
``num_experts + 1`` (the extra one is a "null" expert that always says 0) and sigmoid experts,
``p = Σ_e gate_e · σ(expert_e)``. Its logit ``log p − log(1 − p)`` is computed in log space with
``1 − p = Σ_e gate_e · σ(−expert_e) + gate_null``, so training uses a stable BCE-with-logits.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from affectlens.config import from_dict

__all__ = ["LogisticConfig", "MoEConfig", "MLPConfig", "MLPModel", "DBoFConfig", "LSTMConfig", "MoEHead", "LogisticModel",
           "MoEModel", "DBoFModel", "LSTMModel", "build_model", "init_prior", "FRAME_KINDS", "config_from_dict",
           "BUILDERS", "KINDS", "TextCNNConfig", "TextCNN", "KeywordClassifier", "textcnn_paper", "textcnn_small", "moe_a", "moe_b", "dbof_a", "dbof_b", "lstm_a", "lstm_b", "dbof_tiny", "lstm_tiny"]


@dataclass(frozen=True)
class LogisticConfig:
    input_dim: int = 1152
    num_classes: int = 3862
    kind: str = "logistic"


@dataclass(frozen=True)
class MoEConfig:
    input_dim: int = 1152
    num_classes: int = 3862
    num_experts: int = 2
    kind: str = "moe"


@dataclass(frozen=True)
class MLPConfig:
    input_dim: int = 1152
    num_classes: int = 3862
    hidden: int = 1024
    dropout: float = 0.5
    num_experts: int = 0  # 0: one logistic output per class; >= 1: a mixture-of-experts head
    kind: str = "mlp"


@dataclass(frozen=True)
class DBoFConfig:
    input_dim: int = 1152
    num_classes: int = 3862
    samples: int = 30  # frames sampled per video
    projection: int = 8192  # "cluster size" of the starter code
    hidden: int = 1024
    pooling: str = "max"  # "max" or "average"
    num_experts: int = 2
    kind: str = "dbof"


@dataclass(frozen=True)
class LSTMConfig:
    input_dim: int = 1152
    num_classes: int = 3862
    cells: int = 1024
    layers: int = 2
    num_experts: int = 2
    kind: str = "lstm"


# Named sizes of Table 4 (paper) and tiny ones for CPU tests.
def moe_a(**kw) -> MoEConfig:
    return MoEConfig(num_experts=8, **kw)


def moe_b(**kw) -> MoEConfig:
    return MoEConfig(num_experts=32, **kw)


def dbof_a(**kw) -> DBoFConfig:
    return DBoFConfig(projection=8192, hidden=1024, num_experts=2, samples=30, **kw)


def dbof_b(**kw) -> DBoFConfig:
    return DBoFConfig(projection=16384, hidden=2048, num_experts=16, samples=60, **kw)


def lstm_a(**kw) -> LSTMConfig:
    return LSTMConfig(cells=1024, layers=2, num_experts=2, **kw)


def lstm_b(**kw) -> LSTMConfig:
    return LSTMConfig(cells=512, layers=4, num_experts=4, **kw)


def dbof_tiny(**kw) -> DBoFConfig:
    return DBoFConfig(projection=64, hidden=32, num_experts=2, samples=8, **kw)


def lstm_tiny(**kw) -> LSTMConfig:
    return LSTMConfig(cells=32, layers=1, num_experts=2, **kw)


class MoEHead(nn.Module):
    """Mixture-of-experts classifier: (B, D) → logits (B, C)."""

    def __init__(self, input_dim: int, num_classes: int, num_experts: int):
        super().__init__()
        self.num_classes, self.num_experts = num_classes, num_experts
        self.gate = nn.Linear(input_dim, num_classes * (num_experts + 1))
        self.expert = nn.Linear(input_dim, num_classes * num_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, e = x.shape[0], self.num_classes, self.num_experts
        log_gate = F.log_softmax(self.gate(x).view(b, c, e + 1), dim=-1)  # (B, C, E+1)
        a = self.expert(x).view(b, c, e)  # (B, C, E)
        log_p = torch.logsumexp(log_gate[..., :e] + F.logsigmoid(a), dim=-1)
        log_q = torch.logsumexp(torch.cat([log_gate[..., :e] + F.logsigmoid(-a), log_gate[..., e:]], -1), -1)
        return log_p - log_q  # logit of p


class LogisticModel(nn.Module):
    """One linear layer per class (the starter code's ``LogisticModel``)."""

    def __init__(self, config: LogisticConfig):
        super().__init__()
        self.config = config
        self.head = nn.Linear(config.input_dim, config.num_classes)

    def forward_features(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        return x

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(feats)

    def forward(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        return self.forward_head(self.forward_features(x, lengths))


class MoEModel(LogisticModel):
    """Video-level mixture of experts (features are the input itself)."""

    def __init__(self, config: MoEConfig):
        nn.Module.__init__(self)
        self.config = config
        self.head = MoEHead(config.input_dim, config.num_classes, config.num_experts)


class MLPModel(LogisticModel):
    """Video-level MLP: batch-norm of the input, one hidden layer (BN, ReLU, dropout), then a
    logistic (or MoE) head. Not in the starter code: on 20k real videos it beats the starter
    code's MoE by about 3 GAP (docs/videotag.md); the normalised input and the dropout are what a
    linear model of the raw mean features lacks."""

    def __init__(self, config: MLPConfig):
        nn.Module.__init__(self)
        self.config = config
        self.body = nn.Sequential(nn.BatchNorm1d(config.input_dim), nn.Linear(config.input_dim, config.hidden),
                                  nn.BatchNorm1d(config.hidden), nn.ReLU(inplace=True), nn.Dropout(config.dropout))
        self.head = (MoEHead(config.hidden, config.num_classes, config.num_experts) if config.num_experts
                     else nn.Linear(config.hidden, config.num_classes))

    def forward_features(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        return self.body(x)


def sample_frames(lengths: torch.Tensor, k: int, training: bool) -> torch.Tensor:
    """Frame indices (B, k): uniform random with replacement when training (starter
    ``SampleRandomFrames``), evenly spaced otherwise (deterministic evaluation)."""
    lengths = lengths.clamp(min=1).to(torch.float32)[:, None]
    if training:
        pos = torch.rand(lengths.shape[0], k, device=lengths.device) * lengths
    else:
        pos = (torch.arange(k, device=lengths.device)[None, :] + 0.5) * lengths / k
    return pos.floor().long()  # < length by construction


class DBoFModel(nn.Module):
    """Deep Bag of Frames: sample → project (BN, ReLU6) → pool → hidden (BN, ReLU6) → MoE."""

    def __init__(self, config: DBoFConfig):
        super().__init__()
        if config.pooling not in ("max", "average"):
            raise ValueError(f"pooling must be 'max' or 'average', not {config.pooling!r}")
        self.config = config
        self.input_norm = nn.BatchNorm1d(config.input_dim)
        self.project = nn.Linear(config.input_dim, config.projection, bias=False)
        self.project_norm = nn.BatchNorm1d(config.projection)
        self.hidden = nn.Linear(config.projection, config.hidden, bias=False)
        self.hidden_norm = nn.BatchNorm1d(config.hidden)
        self.head = MoEHead(config.hidden, config.num_classes, config.num_experts)

    def forward_features(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b, _, d = x.shape
        idx = sample_frames(lengths, self.config.samples, self.training)  # (B, K)
        frames = torch.gather(x, 1, idx[..., None].expand(-1, -1, d))  # (B, K, D)
        h = self.input_norm(frames.reshape(-1, d))  # (B·K, D)
        h = F.relu6(self.project_norm(self.project(h)))  # (B·K, P)
        h = h.view(b, self.config.samples, -1)  # (B, K, P)
        h = h.amax(1) if self.config.pooling == "max" else h.mean(1)  # (B, P)
        return F.relu6(self.hidden_norm(self.hidden(h)))  # (B, H)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(feats)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x, lengths))


class LSTMModel(nn.Module):
    """Stacked LSTM over the frames; the top layer's last valid hidden state feeds an MoE."""

    def __init__(self, config: LSTMConfig):
        super().__init__()
        self.config = config
        self.lstm = nn.LSTM(config.input_dim, config.cells, num_layers=config.layers, batch_first=True)
        self.head = MoEHead(config.cells, config.num_classes, config.num_experts)

    def forward_features(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        _, (h, _) = self.lstm(packed)  # h: (layers, B, cells)
        return h[-1]

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(feats)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x, lengths))


# ---------------------------------------------------------------------------- text models (Tables 5-6)

@dataclass(frozen=True)
class TextCNNConfig:
    vocab_size: int = 1  # rows of the (frozen) word-vector table, + 1 for padding
    embed_dim: int = 300
    widths: tuple = (1, 2, 3, 4, 5, 6, 7, 8)
    channels: int = 512
    hidden: int = 4096  # the text feature handed to the MoE
    num_classes: int = 3862
    dropout: float = 0.5
    weight_decay: float = 1e-7


def textcnn_paper(**kw) -> TextCNNConfig:
    """Table 6: widths 1..8, 512 channels, 4096 hidden, 300-d word2vec."""
    return TextCNNConfig(**kw)


def textcnn_small(**kw) -> TextCNNConfig:
    """Same shape, CPU-sized: 64 channels, 512 hidden (used by the synthetic Table 5 run)."""
    return TextCNNConfig(**{"channels": 64, "hidden": 512, **kw})


class TextCNN(nn.Module):
    """Kim-style multi-width CNN over frozen word vectors: ids (B, L) → logits (B, C).

    Parallel 1-d convolutions of widths 1..8 (512 channels each; batch-norm before ReLU; max over
    time), one 4096-unit hidden layer (batch-norm, ReLU) whose output is the text feature, dropout,
    a sigmoid output layer; L2 1e-7 (weight decay). ``vectors`` (V, E) fill the frozen embedding."""

    def __init__(self, config: TextCNNConfig, vectors: np.ndarray | None = None):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=0)
        if vectors is not None:
            self.embed.weight.data[1:] = torch.from_numpy(vectors)
        self.embed.weight.requires_grad_(False)
        self.convs = nn.ModuleList(nn.Conv1d(config.embed_dim, config.channels, w, padding=w - 1)
                                   for w in config.widths)
        self.conv_norms = nn.ModuleList(nn.BatchNorm1d(config.channels) for _ in config.widths)
        self.hidden = nn.Linear(config.channels * len(config.widths), config.hidden)
        self.hidden_norm = nn.BatchNorm1d(config.hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.hidden, config.num_classes)

    def forward_features(self, ids: torch.Tensor) -> torch.Tensor:
        e = self.embed(ids).transpose(1, 2)  # (B, E, L)
        pooled = [F.relu(n(c(e))).amax(-1) for c, n in zip(self.convs, self.conv_norms)]  # k × (B, ch)
        return F.relu(self.hidden_norm(self.hidden(torch.cat(pooled, 1))))  # (B, hidden)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(feats))

    def forward(self, ids: torch.Tensor, lengths=None) -> torch.Tensor:
        return self.forward_head(self.forward_features(ids))


class KeywordClassifier(nn.Module):
    """The keyword decoder: two fully connected layers then a sigmoid (logits returned)."""

    def __init__(self, input_dim: int = 1024, hidden: int = 512, num_classes: int = 3862):
        super().__init__()
        self.fc1 = nn.Linear(input_dim, hidden)
        self.out = nn.Linear(hidden, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc1(x))

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.out(feats)

    def forward(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


KINDS = {"logistic": (LogisticConfig, LogisticModel), "moe": (MoEConfig, MoEModel), "mlp": (MLPConfig, MLPModel),
          "dbof": (DBoFConfig, DBoFModel), "lstm": (LSTMConfig, LSTMModel)}
FRAME_KINDS = ("dbof", "lstm")  # models that read frame-level shards
# A config file may name a size instead of restating its numbers (``model: moe_a``).
BUILDERS = {f.__name__: f for f in (moe_a, moe_b, dbof_a, dbof_b, lstm_a, lstm_b, dbof_tiny, lstm_tiny)}


def config_from_dict(d: dict):
    """Rebuild a model config from its ``dataclasses.asdict`` form (as stored in checkpoints and
    configs); an unknown field is an error, never silently dropped."""
    kind = d.get("kind")
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r} (expected one of {sorted(KINDS)})")
    return from_dict(KINDS[kind][0], {k: v for k, v in d.items() if k != "kind"})


def build_model(config) -> nn.Module:
    """The model for a config instance."""
    for cfg_cls, model_cls in KINDS.values():
        if isinstance(config, cfg_cls):
            return model_cls(config)
    raise TypeError(f"not a videotag model config: {type(config).__name__}")


def init_prior(model: nn.Module, prior: torch.Tensor) -> None:
    """Start every class at its training frequency instead of p = 0.5: with thousands of rare
    classes the first epochs otherwise go to pushing all biases down."""
    p = prior.clamp(1e-6, 0.5)
    head = model.head if hasattr(model, "head") else model.out
    with torch.no_grad():
        if isinstance(head, MoEHead):
            e = head.num_experts
            # gates start uniform over E + 1, so p = E/(E+1) · σ(b): solve for b
            q = (p * (e + 1) / e).clamp(max=0.5)
            head.expert.bias.copy_(torch.logit(q).repeat_interleave(e))
        else:
            head.bias.copy_(torch.logit(p))
