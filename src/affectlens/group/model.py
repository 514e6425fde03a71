"""GroupEmotionNet: privacy-compliant group emotion from global video frames and log-mel audio (paper 000).

Video branch: a timm ViT (head removed) applied to each frame, then a linear layer to ``d_model``
when the ViT width differs. Audio branch: four CNN blocks (three 3x3 conv+ReLU, 2x2 max-pool) per
1-s log-mel, adaptive average pool to (1, 2), a linear layer to ``d_model`` when widths differ,
fixed sinusoidal positions and one pre-norm Transformer encoder layer. Fusion: cross-attention
with audio as query and video as key/value, then late fusion of [audio, cross, video] →
3·d_model, mean over time (or flatten) → linear → classes.

Shapes: ``video`` (B, T, 3, H, W) float in [0, 1]; ``audio`` (B, F, 1, 128, 251) log-mel.
With T = 75 and F = 5 the video embeddings are mean-pooled into 5 segments of 15.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from affectlens.config import from_dict
from affectlens.errors import DataError, ShapeError

PAPER_AUDIO_CHANNELS = ((32, 64, 64), (128, 128, 128), (256, 256, 256), (512, 512, 512))
TINY_AUDIO_CHANNELS = ((4, 8, 8), (16, 16, 16), (32, 32, 32), (64, 64, 64))
MODALITIES = ("audio", "video", "fusion")
HEADS = ("mean", "flatten")
VIT_STEMS = ("patch", "conv", "convpool")


@dataclass(frozen=True)
class GroupConfig:
    modality: str = "fusion"            # "audio" | "video" | "fusion"
    head: str = "mean"                  # "mean" over time, or "flatten" the time axis
    n_video: int = 5                    # video frames per clip (5 or 75 in the paper)
    n_audio: int = 5                    # 1-s audio windows per clip (5 or 75)
    n_classes: int = 3
    vit_name: str = "vit_large_patch14_clip_224"
    img_size: int = 224
    vit_patch: int = 0                  # 0 = the architecture's own patch size
    vit_pool: str = "token"             # timm global_pool: "token" (CLS) or "avg"
    vit_depth: int = 0                  # 0 = the architecture's own depth (24 for ViT-L)
    vit_stem: str = "patch"             # "patch": the ViT's linear patch embedding; "conv" / "convpool": a
    #                                     hybrid ViT whose tokens come from a small CNN (ViT paper §3.1)
    vit_stem_channels: tuple[int, ...] = (32, 64, 128)  # conv stems: one width per 2x down-sampling
    vit_init_values: float = 0.0        # >0: LayerScale (CaiT) with this initial value, so each block
    #                                     starts close to the identity (0 = the architecture's default)
    video_proj: bool = True             # the paper's "custom linear layer" after the ViT, trained while the
    #                                     ViT is frozen; False keeps an identity when the widths already match
    d_model: int = 1024
    n_heads: int = 4
    ff_dim: int = 2048                  # feed-forward width = 2·d_model in the paper
    dropout_ff: float = 0.5
    dropout_attn: float = 0.2
    audio_channels: Tuple[Tuple[int, ...], ...] = PAPER_AUDIO_CHANNELS
    audio_stem_pool: int = 1            # >1: average-pool the log-mel first (CPU sizes only)
    n_mels: int = 128
    mel_frames: int = 251

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.vit_stem not in VIT_STEMS:
            raise ValueError(f"vit_stem must be one of {VIT_STEMS}, got {self.vit_stem!r}")
        a, v = max(self.n_audio, self.n_video), min(self.n_audio, self.n_video)
        if self.modality == "fusion" and a % v:
            raise ValueError(f"n_video={self.n_video} and n_audio={self.n_audio}: one must divide the other")

    @property
    def n_steps(self) -> int:
        """Time steps the head sees: audio steps when audio is used, else video steps."""
        return self.n_video if self.modality == "video" else self.n_audio


# ----------------------------------------------------------------------------- named sizes
def group_paper(modality: str = "fusion", head: str = "mean", n_video: int = 5, n_audio: int = 5) -> GroupConfig:
    """The paper's size: ViT-L/14 CLIP at 224, d_model 1024, 4 heads, ff 2048."""
    return GroupConfig(modality=modality, head=head, n_video=n_video, n_audio=n_audio)


def group_base(modality: str = "fusion", head: str = "mean", n_video: int = 5, n_audio: int = 5) -> GroupConfig:
    """CPU-size: ViT-B/16 at 224 projected to d_model 256, paper-width audio CNN."""
    return GroupConfig(modality=modality, head=head, n_video=n_video, n_audio=n_audio,
                       vit_name="vit_base_patch16_224", d_model=256, ff_dim=512)


def group_tiny(modality: str = "fusion", head: str = "mean", n_video: int = 5, n_audio: int = 5,
               img_size: int = 64, vit_depth: int = 2, vit_stem: str = "convpool") -> GroupConfig:
    """CPU-size for tests and benchmarks: a 2-block hybrid ViT-Ti at 64 px, a narrow audio CNN on
    4x4-pooled log-mels, d_model 128.

    Trained from random weights on a few hundred clips, the plain ViT (linear 8-px patches,
    average-pooled) never learned the synthetic faces, although a small CNN does within 2 epochs:
    a smile is a few pixels in one token out of 64. So the tokens come from a small CNN
    (``vit_stem="convpool"``: three 3x3 conv + BN + ReLU + 2x2 max-pool blocks, 16-32-64, plus one of
    128 → a 4x4 grid of 16-px cells), the blocks start near the identity (LayerScale 1e-4) and the
    frame embedding is the max over tokens. ``vit_stem="patch"`` gives the old linear-patch ViT
    (avg-pooled) for comparison."""
    if vit_stem == "patch":
        vit = {"vit_patch": 8, "vit_pool": "avg"}
    else:
        vit = {"vit_stem": vit_stem, "vit_stem_channels": (16, 32, 64, 128), "vit_pool": "max",
               "vit_init_values": 1e-4}
    # 4 stem blocks → 16 tokens per 64-px frame: 3x cheaper than 3 blocks (64 tokens), which also learn
    return GroupConfig(modality=modality, head=head, n_video=n_video, n_audio=n_audio,
                       vit_name="vit_tiny_patch16_224", img_size=img_size, vit_depth=vit_depth, audio_stem_pool=4,
                       d_model=128, ff_dim=256, dropout_ff=0.1, dropout_attn=0.1,
                       audio_channels=TINY_AUDIO_CHANNELS, **vit)


BUILDERS = {"paper": group_paper, "base": group_base, "tiny": group_tiny}


# ----------------------------------------------------------------------------- blocks
def sinusoidal_positions(n: int, d: int) -> torch.Tensor:
    """Fixed sinusoidal positional encoding (Vaswani et al.) of shape (n, d)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: d // 2])
    return pe


class ConvBlock(nn.Sequential):
    """One audio CNN block: 3x3 conv + ReLU for each width, then 2x2 max-pool."""

    def __init__(self, in_ch: int, widths: Tuple[int, ...]):
        layers = []
        for w in widths:
            layers += [nn.Conv2d(in_ch, w, 3, padding=1), nn.ReLU(inplace=True)]
            in_ch = w
        layers.append(nn.MaxPool2d(2))
        super().__init__(*layers)


class PreNormEncoderLayer(nn.Module):
    """Pre-norm Transformer encoder layer with separate attention / feed-forward dropout."""

    def __init__(self, d: int, heads: int, ff: int, dropout_ff: float, dropout_attn: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout_attn, batch_first=True)
        self.drop_attn = nn.Dropout(dropout_attn)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.ReLU(inplace=True), nn.Dropout(dropout_ff), nn.Linear(ff, d))
        self.drop_ff = nn.Dropout(dropout_ff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F, D) -> (B, F, D)
        h = self.norm1(x)
        x = x + self.drop_attn(self.attn(h, h, h, need_weights=False)[0])
        return x + self.drop_ff(self.ff(self.norm2(x)))


# ----------------------------------------------------------------------------- model
class GroupEmotionNet(nn.Module):
    """Audio-only, video-only or fusion group emotion classifier; returns logits (B, n_classes)."""

    def __init__(self, cfg: GroupConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        if cfg.modality in ("video", "fusion"):
            self.vit = _create_vit(cfg)
            mean, std = self.vit.pretrained_cfg.get("mean", (0.5,) * 3), self.vit.pretrained_cfg.get("std", (0.5,) * 3)
            self.register_buffer("pix_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("pix_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
            width = self.vit.num_features
            self.video_proj = nn.Linear(width, d) if cfg.video_proj or width != d else nn.Identity()
        if cfg.modality in ("audio", "fusion"):
            self.audio_norm = nn.BatchNorm2d(1)  # log-mel scale varies by source; learn it
            p = cfg.audio_stem_pool
            self.audio_stem = nn.AvgPool2d(p, ceil_mode=True) if p > 1 else nn.Identity()
            blocks, in_ch = [], 1
            for widths in cfg.audio_channels:
                blocks.append(ConvBlock(in_ch, widths))
                in_ch = widths[-1]
            self.audio_cnn = nn.Sequential(*blocks)
            self.audio_pool = nn.AdaptiveAvgPool2d((1, 2))
            self.audio_proj = nn.Linear(2 * in_ch, d) if 2 * in_ch != d else nn.Identity()
            self.register_buffer("audio_pos", sinusoidal_positions(cfg.n_audio, d), persistent=False)
            self.audio_encoder = PreNormEncoderLayer(d, cfg.n_heads, cfg.ff_dim, cfg.dropout_ff, cfg.dropout_attn)
        if cfg.modality == "fusion":
            self.cross_attn = nn.MultiheadAttention(d, cfg.n_heads, dropout=cfg.dropout_attn, batch_first=True)
        width = (3 if cfg.modality == "fusion" else 1) * d
        self.head = nn.Linear(width * (cfg.n_steps if cfg.head == "flatten" else 1), cfg.n_classes)
        if hasattr(self, "audio_cnn"):
            # 12 plain conv+ReLU layers without normalisation: He init keeps the signal alive
            # (PyTorch's default conv init shrinks it layer by layer and the branch never trains).
            for m in self.audio_cnn.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(m.bias)

    # --- encoders
    def forward_video(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) in [0, 1] → per-frame embeddings (B, T, d_model)."""
        if video.dim() != 5 or video.shape[2] != 3:
            raise ShapeError(f"video must be (B, T, 3, H, W), got {tuple(video.shape)}")
        b, t = video.shape[:2]
        x = video.flatten(0, 1)  # (B·T, 3, H, W)
        if x.shape[-2:] != (self.cfg.img_size, self.cfg.img_size):
            x = F.interpolate(x, size=(self.cfg.img_size,) * 2, mode="bilinear", align_corners=False)
        x = (x - self.pix_mean) / self.pix_std
        emb = self.video_proj(self.vit(x))  # (B·T, D)
        return emb.view(b, t, -1)  # (B, T, D)

    def forward_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, F, 1, n_mels, frames) log-mel → contextualised embeddings (B, F, d_model)."""
        if audio.dim() != 5 or audio.shape[2] != 1:
            raise ShapeError(f"audio must be (B, F, 1, n_mels, frames), got {tuple(audio.shape)}")
        b, f = audio.shape[:2]
        if f != self.cfg.n_audio:
            raise ShapeError(f"audio has {f} frames, the model expects {self.cfg.n_audio}")
        x = self.audio_cnn(self.audio_stem(self.audio_norm(audio.flatten(0, 1))))  # (B·F, C, h, w)
        x = self.audio_pool(x).flatten(1)  # (B·F, 2C)
        x = self.audio_proj(x).view(b, f, -1) + self.audio_pos  # (B, F, D)
        return self.audio_encoder(x)

    def align_video(self, v: torch.Tensor, steps: int) -> torch.Tensor:
        """Match the video sequence to ``steps`` audio steps: mean-pool segments or repeat frames."""
        b, t, d = v.shape
        if t == steps:
            return v
        if t > steps:  # e.g. 75 frames → 5 segments of 15
            return v.view(b, steps, t // steps, d).mean(2)  # (B, steps, D)
        return v.repeat_interleave(steps // t, dim=1)  # (B, steps, D)

    def cross_attend(self, audio_emb: torch.Tensor, video_emb: torch.Tensor) -> torch.Tensor:
        """Cross-attention: audio is the query, video the key and value → (B, F_audio, D)."""
        return self.cross_attn(audio_emb, video_emb, video_emb, need_weights=False)[0]

    # --- timm-style split
    def forward_features(self, video: Optional[torch.Tensor] = None,
                         audio: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Per-step features (B, steps, width): width = d_model, or 3·d_model for fusion."""
        m = self.cfg.modality
        if m == "video":
            return self.forward_video(_need(video, "video"))
        a = self.forward_audio(_need(audio, "audio"))
        if m == "audio":
            return a
        v = self.align_video(self.forward_video(_need(video, "video")), a.shape[1])
        return torch.cat([a, self.cross_attend(a, v), v], dim=-1)  # (B, F, 3D)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        if self.cfg.head == "mean":
            return self.head(feats.mean(1))  # (B, width) -> (B, K)
        return self.head(feats.flatten(1))  # (B, steps·width) -> (B, K)

    def forward(self, video: Optional[torch.Tensor] = None, audio: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(video, audio))

    # --- training helpers
    def set_vit_frozen(self, frozen: bool) -> None:
        """Freeze (or release) the ViT weights; the paper freezes them for the first 10 epochs."""
        if hasattr(self, "vit"):
            for p in self.vit.parameters():
                p.requires_grad_(not frozen)

    def load_vit_weights(self, path: str | Path) -> None:
        """Load a ViT state_dict from a local file (.pth/.pt/.bin or .safetensors); the head is ignored."""
        if not hasattr(self, "vit"):
            raise DataError(path, "this model variant has no video branch to load ViT weights into")
        sd = _read_state_dict(Path(path))
        sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
        missing, unexpected = self.vit.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.startswith("head")]
        if missing:
            raise DataError(path, f"ViT weights do not fit {self.cfg.vit_name}: {len(missing)} missing keys, "
                                  f"e.g. {missing[:3]}")


def _need(x, name):
    if x is None:
        raise ShapeError(f"this model variant needs the {name!r} input")
    return x


class ConvStemEmbed(nn.Module):
    """Tokens from a small convolutional stem instead of a linear patch embedding (a "hybrid" ViT,
    Dosovitskiy et al. §3.1; the stem design of Xiao et al., "Early convolutions help transformers
    see better"): ``k`` stride-2 3x3 conv + BatchNorm + ReLU layers, then a 1x1 conv to the ViT
    width, so each token covers a ``2**k``-px cell of the whole frame (no crops). Drop-in for timm's
    ``PatchEmbed`` (same constructor keywords, (B, N, D) output)."""

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 channels: tuple[int, ...] = (32, 64, 128), pool: bool = False, bias: bool = True, **_):
        super().__init__()
        layers, c = [], in_chans
        for w in channels:
            if pool:  # 3x3 conv (stride 1) + BN + ReLU, then 2x2 max-pool: small local cues survive the stride
                layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                           nn.MaxPool2d(2)]
            else:
                layers += [nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w),
                           nn.ReLU(inplace=True)]
            c = w
        self.stem = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c, embed_dim, 1, bias=bias)
        stride = 2 ** len(channels)
        size = img_size if isinstance(img_size, int) else img_size[0]
        if size % stride:
            raise ValueError(f"img_size {size} is not a multiple of the conv stem's stride {stride}")
        self.img_size, self.patch_size = (size, size), (stride, stride)
        self.grid_size = (size // stride, size // stride)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.dynamic_img_pad = False
        for m in self.stem.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def feat_ratio(self, as_scalar: bool = True):
        return self.patch_size[0] if as_scalar else self.patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) -> (B, (S/stride)², D)
        return self.proj(self.stem(x)).flatten(2).transpose(1, 2)


def _create_vit(cfg: GroupConfig) -> nn.Module:
    import timm

    kwargs = dict(pretrained=False, num_classes=0, global_pool=cfg.vit_pool, img_size=cfg.img_size)
    if cfg.vit_patch:
        kwargs["patch_size"] = cfg.vit_patch
    if cfg.vit_depth:
        kwargs["depth"] = cfg.vit_depth
    if cfg.vit_init_values:
        kwargs["init_values"] = cfg.vit_init_values
    if cfg.vit_stem != "patch":
        kwargs["embed_layer"] = functools.partial(ConvStemEmbed, channels=tuple(cfg.vit_stem_channels),
                                                  pool=cfg.vit_stem == "convpool")
    return timm.create_model(cfg.vit_name, **kwargs)


def _read_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise DataError(path, "ViT weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DataError(path, f"not a readable weights file ({type(e).__name__})") from None
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    return sd


def build_model(cfg: GroupConfig, vit_weights: str | Path | None = None) -> GroupEmotionNet:
    """Create the model; a pretrained ViT comes only from a local ``vit_weights`` file (never a hub)."""
    model = GroupEmotionNet(cfg)
    if vit_weights:
        model.load_vit_weights(vit_weights)
    return model


def config_from_dict(d: dict) -> GroupConfig:
    """Rebuild a config from a checkpoint's JSON dict (``affectlens.config.from_dict``: lists back to
    tuples, an unknown or mistyped field is an error)."""
    return from_dict(GroupConfig, d)
