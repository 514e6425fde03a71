"""The paper's recipe: setup, fit, evaluate, predict, and the Table 2 ablation.

Defaults are the paper's (configs/group_paper.yaml): SGD lr 1e-5 momentum 0.9, batch 4, ViT frozen
for the first 10 epochs then released, cross-entropy (focal optional), synthetic ratio 0.3 when a
synthetic VGAF-format folder is given. Checkpoints: ``last.pt`` every epoch (with the optimizer
and history, so ``train`` resumes) and ``best.pt`` (best validation accuracy).
"""
from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from affectlens.errors import DataError
from affectlens.group.data import CLASSES, FeatureSpec, GroupClips, VgafItem, extract_features, read_vgaf
from affectlens.group.model import BUILDERS, GroupConfig, build_model, config_from_dict

Log = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    size: str = "paper"          # paper | base | tiny (model builders in model.py)
    modality: str = "fusion"     # audio | video | fusion
    head: str = "mean"           # mean | flatten
    frames: int = 5              # video frames per clip (5 or 75)
    audio_frames: int = 0        # 1-s audio windows per clip; 0 = same as frames
    img_size: int = 0            # 0 = the size's default (224 for paper/base)
    vit_stem: str = ""           # "" = the size's default; tiny only: convpool (hybrid ViT) | conv | patch
    epochs: int = 30
    batch_size: int = 4
    optimizer: str = "sgd"       # sgd (paper) | adamw
    lr: float = 1e-5
    momentum: float = 0.9
    weight_decay: float = 0.0
    freeze_vit_epochs: int = 10  # the ViT is frozen for these first epochs, then fine-tuned
    loss: str = "ce"             # ce | focal
    focal_gamma: float = 2.0
    synthetic_ratio: float = 0.3  # share of the training set drawn from the synthetic folder, if given
    seed: int = 0
    threads: int = 2
    vit_weights: str = ""        # local ViT weights file ("" = random init; no hub downloads)
    missing_audio: str = "error"  # error | silence

    def model_config(self) -> GroupConfig:
        kw = dict(modality=self.modality, head=self.head, n_video=self.frames, n_audio=self.audio_frames or self.frames)
        if self.vit_stem:
            if self.size != "tiny":
                raise ValueError(f"vit_stem is a tiny-size option; the {self.size!r} size keeps its ViT's own patches")
            kw["vit_stem"] = self.vit_stem
        cfg = BUILDERS[self.size](**kw)
        return dataclasses.replace(cfg, img_size=self.img_size) if self.img_size else cfg

    def feature_spec(self) -> FeatureSpec:
        m = self.model_config()
        return FeatureSpec(n_video=m.n_video, n_audio=m.n_audio, size=m.img_size, missing_audio=self.missing_audio)


def load_config(path: Optional[Path] = None, **overrides) -> TrainConfig:
    """A TrainConfig from a flat YAML file, then ``overrides`` (None values are ignored)."""
    import yaml

    values: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise DataError(path, "config file not found")
        values = yaml.safe_load(path.read_text()) or {}
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DataError(path, f"unknown config keys {unknown}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values)


# ----------------------------------------------------------------------------- data setup
def prepare(data: Path, cfg: TrainConfig, cache: Optional[Path] = None, on_error: str = "skip",
            progress: bool = True, log: Log = print) -> tuple:
    """Index a VGAF folder and fill its feature cache; returns ``(items, cache_dir, problems)``."""
    data = Path(data)
    index = read_vgaf(data, on_error=on_error)
    cache = Path(cache) if cache else (data if data.is_dir() else data.parent) / "cache"
    report = extract_features(index.items, cache, cfg.feature_spec(), progress=progress)
    problems = index.errors + report["failed"]
    for p in problems:
        log(f"skipped: {p}")
    return index.items, cache, problems


def mix_synthetic(real: Sequence[VgafItem], synthetic: Sequence[VgafItem], ratio: float, seed: int) -> List[VgafItem]:
    """Real items plus synthetic ones making up ``ratio`` of the total (paper: 0.3 → 1140 of 3801)."""
    if not real:
        return list(synthetic)
    n = min(len(synthetic), int(round(ratio / (1.0 - ratio) * len(real)))) if ratio > 0 else 0
    pick = np.random.default_rng(seed).permutation(len(synthetic))[:n]
    return list(real) + [synthetic[i] for i in sorted(pick)]


def _loader(ds, batch_size: int, shuffle: bool, seed: int):
    import torch
    from torch.utils.data import DataLoader

    g = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=g, num_workers=0)


# ----------------------------------------------------------------------------- loops
def _loss_fn(cfg: TrainConfig):
    import torch.nn.functional as F

    if cfg.loss == "ce":
        return F.cross_entropy
    if cfg.loss != "focal":
        raise ValueError(f"loss must be 'ce' or 'focal', not {cfg.loss!r}")

    def focal(logits, y):  # FL = -(1 - p_t)^γ log p_t
        logp = F.log_softmax(logits, -1).gather(1, y[:, None]).squeeze(1)
        return (-(1 - logp.exp()) ** cfg.focal_gamma * logp).mean()

    return focal


def _optimizer(model, cfg: TrainConfig):
    import torch

    params = list(model.parameters())  # frozen ViT weights get no gradient, so SGD skips them
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', not {cfg.optimizer!r}")


def train_epoch(model, loader, opt, loss_fn) -> dict:
    model.train()
    total, correct, loss_sum = 0, 0, 0.0
    for batch in loader:
        y = batch["label"]
        logits = model(video=batch["video"], audio=batch["audio"])
        loss = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += float(loss.detach()) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        total += len(y)
    return {"train_loss": loss_sum / max(total, 1), "train_acc": correct / max(total, 1)}


def predict_probs(model, loader) -> tuple:
    """Softmax probabilities (N, K), labels (N,) and ids of a loader, in order."""
    import torch

    model.eval()
    probs, labels, ids = [], [], []
    with torch.no_grad():
        for batch in loader:
            probs.append(torch.softmax(model(video=batch["video"], audio=batch["audio"]), -1).numpy())
            labels.append(batch["label"].numpy())
            ids += list(batch["id"])
    if not probs:
        return np.zeros((0, len(CLASSES))), np.zeros(0, np.int64), ids
    return np.concatenate(probs), np.concatenate(labels), ids


def _checkpoint_config(cfg: TrainConfig, model) -> dict:
    return {"train": dataclasses.asdict(cfg), "model": dataclasses.asdict(model.cfg)}


def fit(cfg: TrainConfig, train_ds, val_ds, out: Path, resume: bool = True, log: Log = print) -> dict:
    """Train with per-epoch checkpoints; resumes from ``out/last.pt`` when present."""
    import torch

    from affectlens.training import load_checkpoint, save_checkpoint, seed_everything

    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.threads)
    out = Path(out)
    model = build_model(cfg.model_config(), vit_weights=cfg.vit_weights or None)
    opt, loss_fn = _optimizer(model, cfg), _loss_fn(cfg)
    history: Dict[str, list] = {"train_loss": [], "train_acc": [], "val_acc": []}
    start, best = 0, -1.0
    if resume and (out / "last.pt").exists():
        ck = load_checkpoint(out / "last.pt")
        model.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        start, best, history = int(ck["epoch"]), float(ck["best_acc"]), ck["history"]
        log(f"resuming {out / 'last.pt'} after epoch {start}")
    train_dl = _loader(train_ds, cfg.batch_size, True, cfg.seed)
    val_dl = _loader(val_ds, max(cfg.batch_size, 8), False, 0) if val_ds is not None and len(val_ds) else None
    for epoch in range(start, cfg.epochs):
        torch.manual_seed(cfg.seed * 1000 + epoch)  # same shuffle/dropout whether resumed or not
        train_dl.generator.manual_seed(cfg.seed * 1000 + epoch)
        model.set_vit_frozen(epoch < cfg.freeze_vit_epochs)
        stats = train_epoch(model, train_dl, opt, loss_fn)
        acc = float("nan")
        if val_dl is not None:
            p, y, _ = predict_probs(model, val_dl)
            acc = float((p.argmax(1) == y).mean())
        for k, v in {**stats, "val_acc": acc}.items():
            history[k].append(v)
        score = acc if val_dl is not None else stats["train_acc"]
        extra = dict(epoch=epoch + 1, history=history, optimizer=opt.state_dict())
        if score > best:
            best = score
            save_checkpoint(out / "best.pt", model, _checkpoint_config(cfg, model), epoch=epoch + 1, best_acc=best)
        save_checkpoint(out / "last.pt", model, _checkpoint_config(cfg, model), best_acc=best, **extra)
        log(f"epoch {epoch + 1}/{cfg.epochs} loss {stats['train_loss']:.4f} train_acc {stats['train_acc']:.3f} "
            f"val_acc {acc:.3f}{' (ViT frozen)' if epoch < cfg.freeze_vit_epochs else ''}")
    return {"history": history, "best_acc": best, "best": str(out / "best.pt"), "last": str(out / "last.pt")}


def fit_lightning(cfg: TrainConfig, train_ds, val_ds, out: Path, trainer: dict, progress: bool = True,
                  log: Log = print) -> dict:
    """The multi-process path (``--devices``/``--num-nodes``/``--strategy``): Lightning's ``fit``.

    Every rank runs this; rank 0 writes ``out/ddp.pt`` (a plain checkpoint ``evaluate`` reads)
    after each epoch. The ViT freeze schedule is kept; focal loss and resume are single-process only.
    """
    import lightning as L
    import torch

    from affectlens.errors import AffectlensError
    from affectlens.training.lightning import LitClassifier
    from affectlens.training.lightning import fit as lightning_fit

    if cfg.loss != "ce":
        raise AffectlensError(f"loss {cfg.loss!r} is only in the single-process loop; use ce with --devices/--num-nodes")
    torch.set_num_threads(cfg.threads)
    model = build_model(cfg.model_config(), vit_weights=cfg.vit_weights or None)

    class FreezeViT(L.Callback):
        def on_train_epoch_start(self, trainer_, module):
            model.set_vit_frozen(trainer_.current_epoch < cfg.freeze_vit_epochs)

    module = LitClassifier(model, input_keys=("video", "audio"), optimizer=cfg.optimizer, lr=cfg.lr,
                           momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    # a frozen ViT (or the unused branch of a one-modality model) gets no gradient on some steps
    strategy = "ddp_find_unused_parameters_true" if trainer.get("strategy") == "ddp" else trainer.get("strategy")
    val_dl = _loader(val_ds, max(cfg.batch_size, 8), False, 0) if val_ds is not None and len(val_ds) else None
    res = lightning_fit(module, _loader(train_ds, cfg.batch_size, True, cfg.seed), val_dl, max_epochs=cfg.epochs,
                        checkpoint=Path(out) / "ddp.pt", config=_checkpoint_config(cfg, model), seed=cfg.seed,
                        callbacks=[FreezeViT()], progress=progress, **{**trainer, "strategy": strategy})
    if res.is_global_zero:
        log(f"{cfg.epochs} epochs on {res.world_size} processes -> {res.checkpoint}")
    acc = res.history.get("val_acc") or res.history.get("train_acc") or [float("nan")]
    return {"history": res.history, "best_acc": acc[-1], "best": str(res.checkpoint), "last": str(res.checkpoint),
            "is_global_zero": res.is_global_zero, "world_size": res.world_size}


def load_model(checkpoint: Path):
    """``(model, TrainConfig)`` from a checkpoint written by ``fit``."""
    from affectlens.training import load_checkpoint

    ck = load_checkpoint(checkpoint)
    cfg = ck["config"]
    if "model" not in cfg or "train" not in cfg:
        raise DataError(checkpoint, "not a group checkpoint (config lacks 'model'/'train')")
    model = build_model(config_from_dict(cfg["model"]))
    model.load_state_dict(ck["state_dict"])
    model.eval()
    return model, TrainConfig(**cfg["train"])


# ----------------------------------------------------------------------------- commands
def train(cfg: TrainConfig, data: Path, out: Path, val: Optional[Path] = None, synthetic: Optional[Path] = None,
          cache: Optional[Path] = None, on_error: str = "skip", resume: bool = True, progress: bool = True,
          log: Log = print, trainer: dict | None = None) -> dict:
    """Index, cache features, mix synthetic clips at ``cfg.synthetic_ratio``, fit, evaluate on ``val``.

    ``data`` may be None when training on synthetic clips only (Table 2's ``synt_video`` rows).
    ``trainer`` (Lightning ``Trainer`` arguments from ``training.options.trainer_kwargs``) trains
    through :func:`fit_lightning` instead; then only rank 0 (``result["is_global_zero"]``) evaluates.
    """
    from affectlens.utils import write_json

    out = Path(out)
    spec = cfg.feature_spec()
    real, real_cache, problems = prepare(data, cfg, cache, on_error, progress, log) if data else ([], None, [])
    items, caches = list(real), {}
    if synthetic is not None:
        syn, syn_cache, syn_problems = prepare(synthetic, cfg, None, on_error, progress, log)
        problems += syn_problems
        mixed = mix_synthetic(real, syn, cfg.synthetic_ratio, cfg.seed)
        caches.update({it.name: syn_cache for it in mixed[len(real):]})
        items = mixed
        log(f"training set: {len(real)} real + {len(items) - len(real)} synthetic clips")
    if not items:
        raise DataError(data or synthetic, "no usable training clips")
    train_ds = _MultiCache(items, caches, real_cache, spec)
    val_ds = None
    if val is not None:
        v_items, v_cache, v_problems = prepare(val, cfg, None, on_error, progress, log)
        problems += v_problems
        val_ds = GroupClips(v_items, v_cache, spec)
    if trainer is None:
        result = fit(cfg, train_ds, val_ds, out, resume=resume, log=log)
    else:
        result = fit_lightning(cfg, train_ds, val_ds, out, trainer, progress, log)
        if not result["is_global_zero"]:  # every rank runs the command; rank 0 alone reports
            return {**result, "problems": problems}
    result.update(n_train=len(train_ds), problems=problems)
    if val_ds is not None:
        result["eval"] = evaluate_dataset(Path(result["best"]), val_ds, out / "eval")
    write_json(out / "train_summary.json", result)
    from affectlens.report.plots import curves_png

    curves_png({k: v for k, v in result["history"].items() if k != "train_loss"}, out / "curves.png",
               title=f"group {cfg.modality} ({cfg.frames} frames)")
    return result


class _MultiCache:
    """Items whose cache folders differ (real and synthetic clips live in their own folders)."""

    def __init__(self, items, caches: dict, default_cache, spec: FeatureSpec):
        self.parts = []
        by_cache: Dict[str, list] = {}
        for it in items:
            by_cache.setdefault(str(caches.get(it.name, default_cache)), []).append(it)
        for c, its in by_cache.items():
            self.parts.append(GroupClips(its, Path(c), spec))
        self.index = [(k, i) for k, part in enumerate(self.parts) for i in range(len(part))]

    def __len__(self):
        return len(self.index)

    def __getitem__(self, j):
        k, i = self.index[j]
        return self.parts[k][i]


def evaluate_dataset(checkpoint: Path, ds, out: Path) -> dict:
    """Accuracy, per-class P/R/F1 and the confusion matrix (JSON + PNG) of a checkpoint on ``ds``."""
    from affectlens.metrics.classification import classification_report
    from affectlens.report.plots import confusion_matrix_png, per_class_png
    from affectlens.utils import write_json

    model, cfg = load_model(checkpoint)
    p, y, ids = predict_probs(model, _loader(ds, 8, False, 0))
    report = classification_report(y, p.argmax(1), CLASSES)
    report.update(checkpoint=str(checkpoint), n=int(len(y)))
    out = Path(out)
    write_json(out / "eval.json", report)
    confusion_matrix_png(report["confusion_matrix"], CLASSES, out / "confusion.png",
                         title=f"{cfg.modality}, {cfg.frames} frames: acc {report['accuracy']:.3f}")
    per_class_png(report, out / "per_class.png")
    return report


def evaluate(checkpoint: Path, data: Path, out: Path, cache: Optional[Path] = None, on_error: str = "skip",
             progress: bool = True, log: Log = print) -> dict:
    _, cfg = load_model(checkpoint)
    items, cache_dir, problems = prepare(data, cfg, cache, on_error, progress, log)
    report = evaluate_dataset(checkpoint, GroupClips(items, cache_dir, cfg.feature_spec()), out)
    report["problems"] = problems
    return report


# ----------------------------------------------------------------------------- predict
def window_starts(duration: float, window: float, hop: float) -> np.ndarray:
    """Window starts covering ``[0, duration]``; the last window ends exactly at the end."""
    if duration <= window:
        return np.zeros(1)
    starts = np.arange(0.0, duration - window + 1e-9, hop)
    if duration - (starts[-1] + window) > 1e-6:
        starts = np.append(starts, duration - window)
    return starts


def predict_video(model, path: Path, window: float = 5.0, hop: float = 2.5,
                  timeline_min: Optional[float] = None) -> dict:
    """Class probabilities of one clip, or a timeline over sliding ``window``-s windows when the
    video is longer than ``timeline_min`` seconds (default 1.5 windows, e.g. 7.5 s)."""
    import torch

    from affectlens.media import audio_windows, frame_times, load_audio, log_mel, probe, sample_frames

    cfg = model.cfg
    duration = probe(path).duration
    timeline_min = 1.5 * window if timeline_min is None else timeline_min
    starts = window_starts(duration, window, hop) if duration > timeline_min else np.zeros(1)
    length = min(window, duration) if duration > timeline_min else duration
    audio = load_audio(path, missing="silence")
    v_times = np.concatenate([s + frame_times(length, cfg.n_video) for s in starts])
    frames = sample_frames(path, len(v_times), size=(cfg.img_size, cfg.img_size), times=v_times)
    video = torch.from_numpy(frames).float().div_(255).view(len(starts), cfg.n_video, 3, cfg.img_size, cfg.img_size)
    probs = []
    with torch.no_grad():
        for k in range(0, len(starts), 8):
            centres = np.concatenate([s + frame_times(length, cfg.n_audio) for s in starts[k:k + 8]])
            mel = torch.from_numpy(log_mel(audio_windows(audio, centres)))
            mel = mel.view(-1, cfg.n_audio, 1, *mel.shape[-2:])  # (B, F, 1, 128, 251)
            probs.append(torch.softmax(model(video=video[k:k + 8], audio=mel), -1).numpy())
    p = np.concatenate(probs)
    windows = [{"start": float(s), "end": float(s + length), "probs": dict(zip(CLASSES, map(float, q))),
                "label": CLASSES[int(q.argmax())]} for s, q in zip(starts, p)]
    mean = p.mean(0)
    return {"video": str(path), "duration": duration, "mode": "timeline" if len(starts) > 1 else "clip",
            "probs": dict(zip(CLASSES, map(float, mean))), "label": CLASSES[int(mean.argmax())], "windows": windows}


def predict(checkpoint: Path, videos: Sequence[Path], out: Path, window: float = 5.0, hop: float = 2.5,
            log: Log = print) -> dict:
    """Predict every video; writes ``predictions.json``, ``predictions.csv`` and a timeline PNG per
    long video. Bad files are reported and skipped."""
    from affectlens.errors import AffectlensError
    from affectlens.report.plots import timeline_png
    from affectlens.utils import atomic_path, write_json

    model, _ = load_model(checkpoint)
    out = Path(out)
    results, failed = [], []
    for v in videos:
        try:
            r = predict_video(model, Path(v), window, hop)
        except AffectlensError as e:
            failed.append(str(e))
            log(f"failed: {e}")
            continue
        if r["mode"] == "timeline":
            centres = [(w["start"] + w["end"]) / 2 for w in r["windows"]]
            probs = [[w["probs"][c] for c in CLASSES] for w in r["windows"]]
            r["timeline_png"] = str(timeline_png(centres, probs, CLASSES, out / f"{Path(v).stem}_timeline.png",
                                                 title=Path(v).name))
        results.append(r)
    payload = {"checkpoint": str(checkpoint), "classes": list(CLASSES), "results": results, "failed": failed}
    write_json(out / "predictions.json", payload)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["video", "start", "end", *[f"p_{c}" for c in CLASSES], "label", "checkpoint"])
    for r in results:
        for win in r["windows"]:
            w.writerow([r["video"], f"{win['start']:.3f}", f"{win['end']:.3f}",
                        *[f"{win['probs'][c]:.4f}" for c in CLASSES], win["label"], str(checkpoint)])
    with atomic_path(out / "predictions.csv") as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return payload


# ----------------------------------------------------------------------------- Table 2 ablation
# (input name, model modality, uses real clips, uses synthetic clips)
ABLATION_ROWS = (
    ("audio", "audio", True, False),
    ("synt_video", "video", False, True),
    ("video", "video", True, False),
    ("video + synt_video", "video", True, True),
    ("synt_video + audio", "fusion", False, True),
    ("video + audio", "fusion", True, False),
    ("video + audio + synt_video", "fusion", True, True),
)
PAPER_TABLE2 = {  # VGAF validation accuracy (%), 5 and 75 frames
    "audio": (56.40, 54.96), "synt_video": (57.44, 60.05), "video": (73.62, 74.15),
    "video + synt_video": (75.98, 79.24), "synt_video + audio": (62.14, 58.75),
    "video + audio": (76.11, 77.42), "video + audio + synt_video": (78.07, 78.72),
}


def ablation(cfg: TrainConfig, data: Path, val: Path, synthetic: Path, out: Path, frames: Sequence[int] = (5, 75),
             progress: bool = True, log: Log = print) -> dict:
    """Train and evaluate Table 2's seven input combinations for each frame count; resumable
    (a run whose ``eval/eval.json`` exists is read back, not retrained)."""
    import json

    from affectlens.utils import write_json

    out = Path(out)
    results: Dict[str, Dict[int, float]] = {}
    for n in frames:
        for name, modality, use_real, use_syn in ABLATION_ROWS:
            run = out / f"f{n}" / name.replace(" + ", "+")
            done = run / "eval" / "eval.json"
            if not done.exists():
                log(f"ablation: {name}, {n} frames")
                c = dataclasses.replace(cfg, modality=modality, frames=n, audio_frames=0)
                train(c, data if use_real else None, run, val=val, synthetic=synthetic if use_syn else None,
                      progress=progress, log=log)
            results.setdefault(name, {})[n] = json.loads(done.read_text())["accuracy"]
    table = format_table2(results, frames)
    log(table)
    write_json(out / "ablation.json", {"ours": results, "paper": PAPER_TABLE2, "frames": list(frames)})
    (out / "ablation.txt").write_text(table + "\n", encoding="utf-8")
    return results


def format_table2(results: Dict[str, Dict[int, float]], frames: Sequence[int] = (5, 75)) -> str:
    """Table 2's layout: one row per input combination, ours beside the paper's, per frame count."""
    head = f"{'':14}{'Input data':28}" + "".join(f"{f'{n} frames: ours':>17}{'paper':>9}" for n in frames)
    lines = [head, "-" * len(head)]
    for i, (name, modality, _, _) in enumerate(ABLATION_ROWS):
        group = ("Video" if modality != "fusion" else "Audio + video") if i in (0, 4) else ""
        cells = ""
        for k, n in enumerate(frames):
            ours = results.get(name, {}).get(n)
            paper = PAPER_TABLE2[name][(5, 75).index(n)] if n in (5, 75) else float("nan")
            cells += f"{'—' if ours is None else f'{100 * ours:.2f}%':>17}{f'{paper:.2f}%':>9}"
        lines.append(f"{group:14}{name:28}{cells}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- demo
def demo_run(out: Path, n_train: int = 240, n_test: int = 60, epochs: int = 7, log: Log = print) -> dict:
    """A few-minute CPU demo: synthesize a small split-cue set (faces tell Positive from the rest,
    sound tells Negative from the rest), train audio-only / video-only / fusion tiny models, evaluate,
    plot, and predict a timeline over a synthesized 15-s video. Returns the metrics.

    64-px frames with 3–4 faces (the paper's 3–9 made each face 14–19 px and needed ~300 clips);
    the tiny hybrid ViT (conv stem, max over tokens). About 2.5 min on one loaded CPU core."""
    import dataclasses as dc

    from affectlens.group.synth import SynthSpec, generate_dataset, write_long_video
    from affectlens.report.plots import curves_png

    out = Path(out)
    spec = SynthSpec(width=64, height=64, fps=10, cues="split", min_faces=3, max_faces=4)
    generate_dataset(out / "data" / "train", n_train, spec, seed=1, progress=False)
    generate_dataset(out / "data" / "test", n_test, spec, seed=2, progress=False)
    base = TrainConfig(size="tiny", frames=5, epochs=epochs, batch_size=8, optimizer="adamw", lr=1e-3,
                       weight_decay=0.01, freeze_vit_epochs=0, threads=1)
    metrics, curves = {}, {}
    for modality in ("audio", "video", "fusion"):
        r = train(dc.replace(base, modality=modality), out / "data" / "train", out / modality,
                  val=out / "data" / "test", progress=False, log=log)
        metrics[modality] = {"accuracy": r["eval"]["accuracy"], "macro_f1": r["eval"]["macro_f1"],
                             "confusion_png": str(out / modality / "eval" / "confusion.png")}
        curves[f"{modality} test acc"] = r["history"]["val_acc"]
    curves_png(curves, out / "modalities.png", title="Synthetic split-cue set: test accuracy per epoch")
    long = write_long_video(out / "data" / "long.mp4", [0, 1, 2], dc.replace(spec, cues="full"), seed=3)
    pred = predict(out / "fusion" / "best.pt", [long], out / "timeline", window=5.0, hop=2.5, log=log)
    metrics["timeline"] = {"video": str(long), "segments": ["Positive", "Neutral", "Negative"],
                           "windows": pred["results"][0]["windows"],
                           "png": pred["results"][0].get("timeline_png")}
    metrics["modalities_png"] = str(out / "modalities.png")
    return metrics
