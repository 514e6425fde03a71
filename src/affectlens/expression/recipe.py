"""FER2013 recipe: train on Training, select on PublicTest, report PrivateTest once.

Batch 64 and Adam (AdamW: Adam with decoupled weight decay) as in the paper, cross-entropy with
label smoothing, and on-the-fly augmentation done on whole uint8 batches in torch (one random
affine per image: rotation, scale, shift, horizontal flip; brightness/contrast jitter; random
erasing). The learning rate is warmup → constant → cosine decay over the last ``decay_frac`` of
the run ("warmup-stable-decay"), so a run can be resumed with a different ``epochs`` as long as
it is still in its constant phase. Every epoch writes ``last.pt`` (resumable, with optimizer state)
and, when PublicTest accuracy improves, ``best.pt`` (a plain checkpoint for predict/eval).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from affectlens.expression import model as M
from affectlens.expression.data import CLASSES, FerSet, load_fer

SIZES = {"tiny": M.expression_tiny, "compact": M.expression_compact, "small": M.expression_small, "base": M.expression_base}


@dataclass(frozen=True)
class TrainConfig:
    data: str = "../shared/data/fer2013"
    out: str = "runs/expression"
    size: str = "compact"               # tiny | compact | small | base (see model.py builders)
    variant: str = "cnn_bilstm"         # cnn_bilstm | cnn | bilstm
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

    def model_config(self) -> M.ExpressionConfig:
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {sorted(SIZES)}, got {self.size!r}")
        return SIZES[self.size](variant=self.variant)


def load_train_config(path: str | Path | None = None, **overrides) -> TrainConfig:
    """A flat YAML recipe file plus keyword overrides (``None`` values are ignored)."""
    values: dict = {}
    if path is not None:
        import yaml

        values = yaml.safe_load(Path(path).read_text()) or {}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values)


# --------------------------------------------------------------------------- augmentation / TTA

def fit_to_model(images: torch.Tensor, side: int) -> torch.Tensor:
    """uint8 ``(B, 1, 48, 48)`` → the model's input side by a centre crop (or resize when smaller)."""
    h = images.shape[-1]
    if h == side:
        return images
    if side < h and side >= h * 0.8:
        o = (h - side) // 2
        return images[..., o:o + side, o:o + side]
    return F.interpolate(images.float(), size=(side, side), mode="bilinear", align_corners=False).round().clamp(0, 255).to(torch.uint8)


def augment(images: torch.Tensor, cfg: TrainConfig, mcfg: M.ExpressionConfig, gen: torch.Generator) -> torch.Tensor:
    """uint8 ``(B, 1, 48, 48)`` → augmented normalised float ``(B, 1, S, S)``, S = model input side."""
    b, side = images.shape[0], mcfg.image_size
    x = images.float() / 255.0
    ang = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(cfg.rotate_deg)
    zoom = 1 + (torch.rand(b, generator=gen) * 2 - 1) * cfg.scale
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    # As in fit_to_model: a slightly smaller input is a crop (side/48 folded into the zoom, so a
    # 40-px input sees 40/48 of the face on average); a much smaller one sees the whole face resized.
    crop = side / images.shape[-1] if 0.8 * images.shape[-1] <= side <= images.shape[-1] else 1.0
    cos, sin = torch.cos(ang) * crop / zoom, torch.sin(ang) * crop / zoom
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * flip, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin * flip, cos
    theta[:, :, 2] = (torch.rand(b, 2, generator=gen) * 2 - 1) * cfg.shift * 2
    grid = F.affine_grid(theta, (b, 1, side, side), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)  # (B, 1, S, S)
    contrast = 1 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * cfg.jitter
    bright = (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * cfg.jitter * 0.4
    mean = x.mean(dim=(2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean + bright).clamp(0, 1)
    x = _random_erase(x, cfg.erase_p, gen)
    return (x - mcfg.pixel_mean) / mcfg.pixel_std


def _random_erase(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    area = (0.02 + torch.rand(b, generator=gen) * 0.13) * h * w
    aspect = torch.exp((torch.rand(b, generator=gen) * 2 - 1) * math.log(3))
    eh = (area * aspect).sqrt().clamp(1, h).long()
    ew = (area / aspect).sqrt().clamp(1, w).long()
    y0 = (torch.rand(b, generator=gen) * (h - eh + 1)).long()
    x0 = (torch.rand(b, generator=gen) * (w - ew + 1)).long()
    ys, xs = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    box = (ys >= y0.view(b, 1, 1)) & (ys < (y0 + eh).view(b, 1, 1)) & (xs >= x0.view(b, 1, 1)) & (xs < (x0 + ew).view(b, 1, 1))
    box &= (torch.rand(b, generator=gen) < p).view(b, 1, 1)
    noise = torch.rand(x.shape, generator=gen)
    return torch.where(box[:, None], noise, x)


def tta_views(images: torch.Tensor, side: int, mode: str) -> list[torch.Tensor]:
    """uint8 ``(B, 1, 48, 48)`` → list of uint8 views ``(B, 1, S, S)`` whose softmaxes are averaged.

    ``none``: centre crop; ``flip``: centre crop and its mirror; ``tencrop``: four corners and the
    centre, each also mirrored (the usual FER2013 ten-crop).
    """
    if mode not in ("none", "flip", "tencrop"):
        raise ValueError(f"tta must be none, flip or tencrop, got {mode!r}")
    centre = fit_to_model(images, side)
    if mode == "none":
        return [centre]
    if mode == "flip" or images.shape[-1] <= side:
        return [centre, centre.flip(-1)]
    h = images.shape[-1]
    d = h - side
    crops = [images[..., y:y + side, x:x + side] for y, x in ((0, 0), (0, d), (d, 0), (d, d))] + [centre]
    return crops + [c.flip(-1) for c in crops]


@torch.no_grad()
def predict_proba(model: M.ExpressionNet, images: np.ndarray | torch.Tensor, tta: str = "none",
                  batch_size: int = 256) -> np.ndarray:
    """uint8 grey faces ``(N, 48, 48)`` or ``(N, 1, 48, 48)`` → class probabilities ``(N, 7)``."""
    model.eval()
    x = torch.as_tensor(np.asarray(images))
    if x.ndim == 3:
        x = x[:, None]  # (N, 1, 48, 48)
    out = []
    for i in range(0, len(x), batch_size):
        views = tta_views(x[i:i + batch_size], model.cfg.image_size, tta)
        probs = sum(F.softmax(model(M.normalise(v, model.cfg)), dim=1) for v in views) / len(views)
        out.append(probs)
    return torch.cat(out).numpy() if out else np.zeros((0, model.cfg.num_classes), np.float32)


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


def _log(out: Path, msg: str) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    with (out / "train.log").open("a") as f:
        f.write(line + "\n")


def train(cfg: TrainConfig, fer: FerSet | None = None, progress: bool = True) -> dict:
    """Fit on Training, keep the PublicTest-best weights; resumes from ``out/last.pt``. Returns the history."""
    from affectlens.training import save_checkpoint, seed_everything

    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    fer = fer if fer is not None else load_fer(cfg.data)
    tr, val = fer.split("Training"), fer.split("PublicTest")
    if cfg.limit_train:
        tr = FerSet(tr.images[:cfg.limit_train], tr.labels[:cfg.limit_train], tr.usage[:cfg.limit_train], tr.ids[:cfg.limit_train])
    mcfg = cfg.model_config()
    model = M.build_model(mcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = _resume(out / "last.pt", model, opt)
    x_all, y_all = torch.from_numpy(tr.images)[:, None], torch.from_numpy(tr.labels)  # (N, 1, 48, 48) uint8
    spe = math.ceil(len(y_all) / cfg.batch_size)
    total = cfg.epochs * spe
    _log(out, f"train {len(y_all)} / select {len(val)} | {cfg.variant}-{cfg.size} "
              f"{M.count_parameters(model) / 1e6:.2f} M params | {cfg.epochs} epochs × {spe} steps | from epoch {state['epoch']}")
    for epoch in range(state["epoch"], cfg.epochs):
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        t0 = time.time()
        loss = _train_epoch(model, opt, x_all, y_all, cfg, mcfg, gen, epoch, spe, total, out, progress)
        probs = predict_proba(model, val.images, tta=cfg.eval_tta)
        acc = float((probs.argmax(1) == val.labels).mean())
        h = state["history"]
        for k, v in (("train_loss", loss), ("val_acc", acc), ("epoch_seconds", time.time() - t0)):
            h.setdefault(k, []).append(v)
        if acc > state["best_acc"]:
            state["best_acc"], state["best_epoch"] = acc, epoch + 1
            save_checkpoint(out / "best.pt", model, mcfg, epoch=epoch + 1, public_test_acc=acc,
                            train_config=dataclasses.asdict(cfg))
        state["epoch"] = epoch + 1
        save_checkpoint(out / "last.pt", model, mcfg, optimizer=opt.state_dict(), **{k: v for k, v in state.items()})
        _log(out, f"epoch {epoch + 1}/{cfg.epochs} loss {loss:.4f} PublicTest acc {acc:.4f} "
                  f"(best {state['best_acc']:.4f} @ {state['best_epoch']}) {time.time() - t0:.0f} s")
    (out / "history.json").write_text(json.dumps(state, indent=2))
    return state


def _resume(path: Path, model, opt) -> dict:
    state = {"epoch": 0, "best_acc": -1.0, "best_epoch": 0, "history": {}}
    if path.is_file():
        ck = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        state = {k: ck[k] for k in state}
    return state


def _train_epoch(model, opt, x_all, y_all, cfg, mcfg, gen, epoch, spe, total, out, progress) -> float:
    from rich.progress import Progress

    model.train()
    order = torch.randperm(len(y_all), generator=gen)
    running, seen, t0 = 0.0, 0, time.time()
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"epoch {epoch + 1}", total=spe)
        for i in range(spe):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            for g in opt.param_groups:
                g["lr"] = lr_at(epoch * spe + i, total, spe, cfg)
            x = augment(x_all[idx], cfg, mcfg, gen)
            loss = F.cross_entropy(model(x), y_all[idx], label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            running += loss.item() * len(idx)
            seen += len(idx)
            bar.advance(task)
            if (i + 1) % 100 == 0:
                rate = (i + 1) / (time.time() - t0)
                _log(out, f"  epoch {epoch + 1} step {i + 1}/{spe} loss {running / seen:.4f} "
                          f"{rate:.2f} steps/s, epoch ETA {(spe - i - 1) / rate:.0f} s")
    return running / max(seen, 1)


def combine(checkpoints: Sequence[str | Path], out: str | Path) -> Path:
    """Write one checkpoint holding the nets of ``checkpoints`` as an averaging ensemble.

    The nets may differ in width or variant but must read the same input and predict the same
    classes (``model.input_contract``)."""
    from affectlens.errors import DataError
    from affectlens.training import load_checkpoint, save_checkpoint

    if len(checkpoints) < 2:
        raise ValueError("combine needs at least two checkpoints")
    cks = [load_checkpoint(p) for p in checkpoints]
    configs = [M.ExpressionConfig(**ck["config"]) for ck in cks]
    for p, ck, cfg in zip(checkpoints, cks, configs):
        if ck.get("members"):
            raise DataError(p, "is already an ensemble; combine single nets")
        if M.input_contract(cfg) != M.input_contract(configs[0]):
            raise DataError(p, f"input differs from {checkpoints[0]}'s (image_size, pixel_mean, pixel_std, "
                               f"num_classes {M.input_contract(cfg)} vs {M.input_contract(configs[0])})")
    ens = M.ExpressionEnsemble(configs)
    for member, ck in zip(ens.members, cks):
        member.load_state_dict(ck["state_dict"])
    sources = [{"file": Path(p).name, "epoch": ck.get("epoch"), "public_test_acc": ck.get("public_test_acc")}
               for p, ck in zip(checkpoints, cks)]
    return save_checkpoint(out, ens, configs[0], members=len(cks), sources=sources,
                           member_configs=[ck["config"] for ck in cks])


# --------------------------------------------------------------------------- evaluation

def evaluate(weights: str | Path | None, data: str | Path, out: str | Path, split: str = "PrivateTest",
             tta: Sequence[str] = ("none", "flip", "tencrop"), fer: FerSet | None = None,
             threads: int = 2) -> dict:
    """Score a checkpoint on one split with each TTA mode; write ``metrics.json`` and, for the last
    mode, ``per_class.png`` (the paper's Fig. 6) and ``confusion_matrix.png`` (Fig. 7, counts)."""
    from affectlens.expression.predict import load_model
    from affectlens.metrics.classification import classification_report
    from affectlens.report.plots import confusion_matrix_png, per_class_png
    from affectlens.utils import write_json

    torch.set_num_threads(threads)
    out = Path(out)
    model = load_model(weights)
    part = (fer if fer is not None else load_fer(data)).split(split)
    reports = {}
    for mode in tta:
        probs = predict_proba(model, part.images, tta=mode)
        reports[mode] = classification_report(part.labels, probs.argmax(1), CLASSES)
    last = reports[tta[-1]]
    name = f"{model.cfg.variant}, {split}, TTA {tta[-1]}"
    per_class_png(last, out / "per_class.png", title=f"Precision / recall / F1 — {name}")
    confusion_matrix_png(np.asarray(last["confusion_matrix"]), CLASSES, out / "confusion_matrix.png",
                         title=f"Confusion matrix (counts) — {name}")
    result = {"weights": str(weights or "shipped"), "split": split, "n": len(part), "variant": model.cfg.variant,
              "params": M.count_parameters(model), "reports": reports}
    write_json(out / "metrics.json", result)
    return result
