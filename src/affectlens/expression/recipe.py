"""FER2013 recipe: train on Training, select on PublicTest, report PrivateTest once.

Batch 64 and Adam (AdamW: Adam with decoupled weight decay) as in the paper, cross-entropy with
label smoothing, and on-the-fly augmentation done on whole uint8 batches in torch (one random
affine per image: rotation, scale, shift, horizontal flip; brightness/contrast jitter; random
erasing). The learning rate is warmup → constant → cosine decay over the last ``decay_frac`` of
the run ("warmup-stable-decay"), so a run can be resumed with a different ``epochs`` as long as
it is still in its constant phase. Training runs on the one engine (:mod:`affectlens.training.engine`):
every epoch writes ``last.pt`` (resumable) and, when PublicTest accuracy improves, ``best.pt``.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from affectlens.config import load_config
from affectlens.errors import DataError
from affectlens.expression import model as M
from affectlens.expression.data import (
    CLASSES,
    FERPLUS_CLASSES,
    LABEL_MODES,
    FerSet,
    ferplus_beside,
    ferplus_split,
    load_fer,
    read_ferplus,
    same_emotion,
)
from affectlens.expression.predict import class_names, fit_to_model, label_set_of, load_model, model_from_checkpoint, predict_proba, tta_views  # noqa: F401 (recipe API)
from affectlens.files import write_json
from affectlens.metrics.classification import classification_report
from affectlens.report.plots import confusion_matrix_png, per_class_png
from affectlens.training import count_parameters, load_checkpoint, save_checkpoint
from affectlens.training.engine import FitResult, TrainModule, fit, loader
from affectlens.training.hardware import Hardware

SIZES = {"tiny": M.expression_tiny, "compact": M.expression_compact, "small": M.expression_small, "base": M.expression_base}


@dataclass(frozen=True)
class TrainConfig:
    data: str = "../shared/data/fer2013"
    out: str = "runs/expression"
    size: str = "compact"               # tiny | compact | small | base (see model.py builders)
    variant: str = "cnn_bilstm"         # cnn_bilstm | cnn | bilstm
    pool: str = "mean"                  # BiLSTM outputs pooled by mean | attention (model.AttentionPool)
    last_pool: bool = True              # False: the BiLSTM reads the map before the last max-pool (4× longer)
    feature_map: int = 0                # feature-mapping layer width before the classifier; 0 = none
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    warmup_epochs: float = 1.0
    decay_frac: float = 0.4             # share of the run spent in the final cosine decay
    grad_clip: float = 5.0
    # augmentation (applied to Training batches only)
    rotate_deg: float = 12.0
    scale: float = 0.12                 # zoom in [1 - scale, 1 + scale]
    shift: float = 0.10                 # translation as a fraction of the side
    jitter: float = 0.25                # brightness/contrast change up to ±jitter
    erase_p: float = 0.5                # random-erasing probability (one box, 2-15 % of the area)
    seed: int = 0
    threads: int = 1                   # 1 is fastest on a shared, oversubscribed machine
    limit_train: int = 0                # use only the first N Training samples (tests); 0 = all
    eval_tta: str = "flip"              # TTA used for PublicTest selection: none | flip | tencrop
    # fer2013 (7 classes, FER2013's labels) or a FER+ protocol on the 8 classes of ten annotators'
    # votes: ferplus-majority | ferplus-soft (cross-entropy on the votes) | ferplus-pld (labels drawn)
    labels: str = "fer2013"
    ferplus: str = ""                   # ferplus.csv; "" = the one in the FER2013 folder (data)
    init: str = ""                      # fine-tune: start from this checkpoint's net (warm_start); "" = from scratch

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {sorted(SIZES)}, got {self.size!r}")
        if self.variant not in ("cnn_bilstm", "cnn", "bilstm"):
            raise ValueError(f"variant must be cnn_bilstm, cnn or bilstm, got {self.variant!r}")
        if self.pool not in M.POOLS:
            raise ValueError(f"pool must be one of {', '.join(M.POOLS)}, got {self.pool!r}")
        if self.eval_tta not in ("none", "flip", "tencrop"):
            raise ValueError(f"eval_tta must be none, flip or tencrop, got {self.eval_tta!r}")
        if self.labels not in LABEL_MODES:
            raise ValueError(f"labels must be one of {', '.join(LABEL_MODES)}, got {self.labels!r}")

    def model_config(self) -> M.ExpressionConfig:
        classes = len(CLASSES) if self.labels == "fer2013" else len(FERPLUS_CLASSES)
        return SIZES[self.size](variant=self.variant, num_classes=classes, pool=self.pool,
                                last_pool=self.last_pool, feature_map=self.feature_map)

    def ferplus_path(self) -> Path:
        return Path(self.ferplus) if self.ferplus else ferplus_beside(self.data)


def load_train_config(path: str | Path | None = None, **overrides) -> TrainConfig:
    """A flat YAML recipe file plus keyword overrides (``None`` values are ignored)."""
    return load_config(TrainConfig, path, **overrides)


# --------------------------------------------------------------------------- augmentation / TTA

def augment(images: torch.Tensor, cfg: TrainConfig, mcfg: M.ExpressionConfig, gen: torch.Generator) -> torch.Tensor:
    """uint8 ``(B, 1, 48, 48)`` → augmented normalised float ``(B, 1, S, S)``, S = model input side.

    Random numbers come from ``gen`` (on the CPU, so a run draws the same on any device) and the
    work happens on ``images``' device."""
    b, side, dev = images.shape[0], mcfg.image_size, images.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen).to(dev)

    x = images.float() / 255.0
    ang = (rand(b) * 2 - 1) * math.radians(cfg.rotate_deg)
    zoom = 1 + (rand(b) * 2 - 1) * cfg.scale
    flip = torch.where(rand(b) < 0.5, -1.0, 1.0)
    # As in fit_to_model: a slightly smaller input is a crop (side/48 folded into the zoom, so a
    # 40-px input sees 40/48 of the face on average); a much smaller one sees the whole face resized.
    crop = side / images.shape[-1] if 0.8 * images.shape[-1] <= side <= images.shape[-1] else 1.0
    cos, sin = torch.cos(ang) * crop / zoom, torch.sin(ang) * crop / zoom
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 1] = cos * flip, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin * flip, cos
    theta[:, :, 2] = (rand(b, 2) * 2 - 1) * cfg.shift * 2
    grid = F.affine_grid(theta, (b, 1, side, side), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)  # (B, 1, S, S)
    contrast = 1 + (rand(b, 1, 1, 1) * 2 - 1) * cfg.jitter
    bright = (rand(b, 1, 1, 1) * 2 - 1) * cfg.jitter * 0.4
    mean = x.mean(dim=(2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean + bright).clamp(0, 1)
    x = _random_erase(x, cfg.erase_p, rand)
    return (x - mcfg.pixel_mean) / mcfg.pixel_std


def _random_erase(x: torch.Tensor, p: float, rand) -> torch.Tensor:
    b, _, h, w = x.shape
    area = (0.02 + rand(b) * 0.13) * h * w
    aspect = torch.exp((rand(b) * 2 - 1) * math.log(3))
    eh = (area * aspect).sqrt().clamp(1, h).long()
    ew = (area / aspect).sqrt().clamp(1, w).long()
    y0 = (rand(b) * (h - eh + 1)).long()
    x0 = (rand(b) * (w - ew + 1)).long()
    ys, xs = torch.arange(h, device=x.device).view(1, h, 1), torch.arange(w, device=x.device).view(1, 1, w)
    box = (ys >= y0.view(b, 1, 1)) & (ys < (y0 + eh).view(b, 1, 1)) & (xs >= x0.view(b, 1, 1)) & (xs < (x0 + ew).view(b, 1, 1))
    box &= (rand(b) < p).view(b, 1, 1)
    noise = rand(*x.shape)
    return torch.where(box[:, None], noise, x)


# --------------------------------------------------------------------------- training

def lr_at(step: int, total: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Warmup (linear) → constant → cosine decay to 1 % over the last ``decay_frac`` of ``total`` steps."""
    warm = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    start = int(total * (1 - cfg.decay_frac))
    if step < start:
        return cfg.lr
    frac = min(1.0, (step - start) / max(1, total - start))
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac)))


class Faces(torch.utils.data.Dataset):
    """uint8 grey faces ``(N, 48, 48)`` and labels as samples ``{"image": (1, 48, 48) uint8, "label"}``,
    plus ``"target"`` (C,) when vote distributions are given (FER+ soft and pld)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, targets: np.ndarray | None = None):
        self.images, self.labels = torch.from_numpy(images)[:, None], torch.from_numpy(labels).long()
        self.targets = None if targets is None else torch.from_numpy(np.asarray(targets, np.float32))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        sample = {"image": self.images[i], "label": self.labels[i]}
        if self.targets is not None:
            sample["target"] = self.targets[i]
        return sample


class ExpressionModule(TrainModule):
    """What is the expression room's own: the CNN-BiLSTM, batch augmentation (drawn per epoch from
    (seed, epoch), so a resumed run augments as an uninterrupted one), label-smoothed
    cross-entropy, AdamW with the warmup-stable-decay schedule per step, and PublicTest accuracy
    (with ``eval_tta``) to select the best epoch."""

    monitor, mode = "val_acc", "max"
    resume_may_change = ("epochs", "threads", "out", "data")

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int):
        mcfg = cfg.model_config()
        super().__init__(mcfg, cfg, seed=cfg.seed)
        self.model, self.cfg, self.mcfg, self.steps_per_epoch = M.build_model(mcfg), cfg, mcfg, steps_per_epoch
        self.gen = torch.Generator()
        # fine-tuning: a resumed run then loads its own last.pt over these weights
        self.started_fresh = warm_start(self.model, cfg.init) if cfg.init else None

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self.gen = torch.Generator().manual_seed(self.cfg.seed * 1000 + self.current_epoch)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x = augment(batch["image"], self.cfg, self.mcfg, self.gen)
        logits = self.model(x)
        if self.cfg.labels == "ferplus-soft":  # cross-entropy against the annotators' vote distribution
            loss = -(batch["target"] * F.log_softmax(logits, dim=1)).sum(1).mean()
        elif self.cfg.labels == "ferplus-pld":  # probabilistic label drawing, from (seed, epoch) like the augmentation
            drawn = torch.multinomial(batch["target"].cpu(), 1, generator=self.gen).squeeze(1).to(logits.device)
            loss = F.cross_entropy(logits, drawn, label_smoothing=self.cfg.label_smoothing)
        else:
            loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.cfg.label_smoothing)
        self.record("train_loss", loss, len(x))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        views = tta_views(batch["image"], self.mcfg.image_size, self.cfg.eval_tta)
        probs = sum(F.softmax(self.model(M.normalise(v, self.mcfg)), dim=1) for v in views) / len(views)
        self.record("val_acc", (probs.argmax(1) == batch["label"]).float().mean(), len(probs))

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        total = self.cfg.epochs * self.steps_per_epoch
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_at(step, total, self.steps_per_epoch, self.cfg) / self.cfg.lr)
        return [opt], [{"scheduler": sched, "interval": "step"}]


def warm_start(net: M.ExpressionNet, path: str | Path) -> list[str]:
    """Copy the trained net in checkpoint ``path`` into ``net`` (``TrainConfig.init``: fine-tuning).

    The two must be the same architecture; only the label set may differ. The classifier of the
    other label set is carried over row by row by emotion (``data.same_emotion``: a FER+ net's
    ``happiness`` row becomes a FER2013 net's ``happy``), so fine-tuning starts from the source's
    predictions rather than from a random layer; a class the source lacks (FER+'s ``contempt``
    for a FER2013 source) keeps its fresh initialisation. Returns what was not copied, e.g.
    ``["head.3 row contempt"]``."""
    src = model_from_checkpoint(load_checkpoint(path), path)
    if isinstance(src, M.ExpressionEnsemble):
        raise DataError(path, "is an ensemble: fine-tune from one of its nets' best.pt")
    mine, state = net.state_dict(), dict(src.state_dict())
    differ = sorted(set(mine) ^ set(state))
    classes = class_names(net.cfg.num_classes)
    rows = same_emotion(class_names(src.cfg.num_classes), classes)
    have = [r for r, i in enumerate(rows) if i is not None]
    cls = f"head.{len(net.head) - 1}."
    try:
        if differ:
            raise RuntimeError(f"{differ[0]} is in one of the two only")
        for part in (cls + "weight", cls + "bias"):  # this net's classifier, its rows taken by emotion
            head = mine[part].clone()
            head[have] = state[part][[rows[r] for r in have]]
            state[part] = head
        net.load_state_dict(state)  # checks every other tensor's shape
    except RuntimeError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[-1].strip()
        raise DataError(path, f"is another architecture than this recipe's ({first[:160]}): give size, "
                              "variant, pool, last_pool and feature_map as it was trained") from None
    return [f"{cls[:-1]} row {c}" for c, i in zip(classes, rows) if i is None]


def train(cfg: TrainConfig, fer: FerSet | None = None, progress: bool | None = None,
          hardware: Hardware | None = None, resume: bool = True, callbacks: Sequence = ()) -> FitResult:
    """Fit on Training, keep the PublicTest-best weights (``best.pt``); resumes from ``out/last.pt``."""
    torch.set_num_threads(cfg.threads)
    fer = fer if fer is not None else load_fer(cfg.data)
    tr, val, targets = fer.split("Training"), fer.split("PublicTest"), None
    if cfg.labels != "fer2013":  # FER+: select on the majority label of FER+ Valid (= PublicTest)
        votes = read_ferplus(cfg.ferplus_path())
        tr, targets = ferplus_split(fer, votes, "Training", cfg.labels)
        val, _ = ferplus_split(fer, votes, "PublicTest", "ferplus-majority")
    if cfg.limit_train:
        tr = FerSet(tr.images[:cfg.limit_train], tr.labels[:cfg.limit_train], tr.usage[:cfg.limit_train], tr.ids[:cfg.limit_train])
        targets = None if targets is None else targets[:cfg.limit_train]
    hardware = hardware or Hardware()
    world = int(os.environ.get("WORLD_SIZE", hardware.processes()))  # a launcher's count wins
    steps = math.ceil(len(tr) / world / cfg.batch_size)
    module = ExpressionModule(cfg, steps)
    print(f"train {len(tr)} / select {len(val)} | {cfg.variant}-{cfg.size} "
          f"{count_parameters(module.model) / 1e6:.2f} M params | {cfg.epochs} epochs x {steps} steps", file=sys.stderr)
    if cfg.init:
        print(f"starting from {cfg.init}" + (f" (fresh: {', '.join(module.started_fresh)})" if module.started_fresh else ""),
              file=sys.stderr)
    return fit(module, loader(Faces(tr.images, tr.labels, targets), cfg.batch_size, shuffle=True, seed=cfg.seed),
               loader(Faces(val.images, val.labels), 256), out=cfg.out, epochs=cfg.epochs, hardware=hardware,
               resume=resume, grad_clip=cfg.grad_clip, progress=progress, callbacks=callbacks)


def combine(checkpoints: Sequence[str | Path], out: str | Path) -> Path:
    """Write one checkpoint holding the nets of ``checkpoints`` as an averaging ensemble.

    A checkpoint that is itself an ensemble adds each of its members (so a shipped ensemble grows
    by one net with ``combine([shipped, new])``). The nets may differ in width or variant but must
    read the same input and predict the same classes (``model.input_contract``)."""
    if len(checkpoints) < 2:
        raise ValueError("combine needs at least two checkpoints")
    nets, sources = [], []
    for p in checkpoints:
        ck = load_checkpoint(p)
        net = model_from_checkpoint(ck, p)
        if M.input_contract(net.cfg) != M.input_contract(nets[0].cfg if nets else net.cfg):
            raise DataError(p, f"input differs from {checkpoints[0]}'s (image_size, pixel_mean, pixel_std, "
                               f"num_classes {M.input_contract(net.cfg)} vs {M.input_contract(nets[0].cfg)})")
        if isinstance(net, M.ExpressionEnsemble):
            nets += list(net.members)
            sources += ck["extra"].get("sources") or [{"file": Path(p).name}] * len(net.members)
        else:
            nets.append(net)
            sources.append({"file": Path(p).name, "epoch": ck["epoch"],
                            "public_test_acc": ck["best"].get("value", ck["extra"].get("public_test_acc"))})
    configs = [n.cfg for n in nets]
    ens = M.ExpressionEnsemble(configs)
    for member, net in zip(ens.members, nets):
        member.load_state_dict(net.state_dict())
    return save_checkpoint(out, ens, configs[0], members=len(nets), sources=sources,
                           member_configs=[dataclasses.asdict(c) for c in configs])


# --------------------------------------------------------------------------- evaluation

def evaluate(weights: str | Path | None, data: str | Path, out: str | Path, split: str = "PrivateTest",
             tta: Sequence[str] = ("none", "flip", "tencrop"), fer: FerSet | None = None,
             threads: int = 2, ferplus: str | Path | None = None, label_set: str = "ferplus") -> dict:
    """Score a checkpoint on one split with each TTA mode; write ``metrics.json`` and, for the last
    mode, ``per_class.png`` (the paper's Fig. 6) and ``confusion_matrix.png`` (Fig. 7, counts).

    ``weights=None`` scores the shipped model of ``label_set``. An 8-class (FER+) model is scored
    against the FER+ majority label of the images that have one
    (``ferplus``: the votes file, default ``<data>/ferplus.csv``); PrivateTest is then FER+ Test."""
    torch.set_num_threads(threads)
    out = Path(out)
    model = load_model(weights, label_set)
    fer = fer if fer is not None else load_fer(data)
    label_set, names = label_set_of(model.cfg.num_classes), class_names(model.cfg.num_classes)
    if label_set == "ferplus":
        part, _ = ferplus_split(fer, read_ferplus(ferplus or ferplus_beside(data)), split, "ferplus-majority")
    else:
        part = fer.split(split)
    reports = {}
    for mode in tta:
        probs = predict_proba(model, part.images, tta=mode)
        reports[mode] = classification_report(part.labels, probs.argmax(1), names)
    last = reports[tta[-1]]
    name = f"{model.cfg.variant}, {split}, TTA {tta[-1]}"
    per_class_png(last, out / "per_class.png", title=f"Precision / recall / F1 — {name}")
    confusion_matrix_png(np.asarray(last["confusion_matrix"]), names, out / "confusion_matrix.png",
                         title=f"Confusion matrix (counts) — {name}")
    result = {"weights": str(weights or "shipped"), "split": split, "n": len(part), "variant": model.cfg.variant,
              "label_set": label_set, "params": count_parameters(model), "reports": reports}
    write_json(out / "metrics.json", result)
    return result
