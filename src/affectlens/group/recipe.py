"""The paper's recipe: setup, fit, evaluate, predict, and the Table 2 ablation.

Defaults are the paper's (configs/group_paper.yaml): SGD lr 1e-5 momentum 0.9, batch 4, ViT frozen
for the first 10 epochs then released, cross-entropy (focal optional), synthetic ratio 0.3 when a
synthetic VGAF-format folder is given. Training runs on the one engine
(:mod:`affectlens.training.engine`) as a :class:`~affectlens.group.train_module.GroupModule`: the run folder gets ``last.pt``
every epoch (so ``train`` resumes exactly), ``best.pt`` (best validation accuracy),
``metrics.csv`` and ``metrics.json``, on one CPU, GPUs or DDP alike.

Model selection: by default ``best.pt`` is the epoch with the best accuracy on a stratified
``select_fraction`` of the training clips held out for that purpose, and ``--val`` is evaluated
once, on ``best.pt``; ``select_on: val`` keeps the EmotiW practice of selecting and reporting on
Val (the result says which was used).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Literal, Optional, Sequence

import numpy as np
import torch

from affectlens.config import from_dict
from affectlens.config import load_config as load
from affectlens.errors import AffectlensError, DataError
from affectlens.files import atomic_path, write_json
from affectlens.group.data import (
    CLASSES,
    FeatureSpec,
    GroupClips,
    VgafItem,
    extract_features,
    iter_window_features,
    read_vgaf,
    to_model_inputs,
)
from affectlens.group.model import BUILDERS, GroupConfig, build_model, config_from_dict
from affectlens.media import probe
from affectlens.metrics.classification import classification_report
from affectlens.report.plots import confusion_matrix_png, curves_png, per_class_png, timeline_png
from affectlens.scale import check_output, run_batch
from affectlens.training.checkpoint import load_checkpoint
from affectlens.training.hardware import Hardware

Log = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    size: Literal["paper", "base", "tiny"] = "paper"  # model builders in model.py
    modality: Literal["audio", "video", "fusion"] = "fusion"
    head: Literal["mean", "flatten"] = "mean"
    frames: int = 5              # video frames per clip (5 or 75)
    audio_frames: int = 0        # 1-s audio windows per clip; 0 = same as frames
    img_size: int = 0            # 0 = the size's default (224 for paper/base)
    vit_stem: str = ""           # "" = the size's default; tiny only: convpool (hybrid ViT) | conv | patch
    epochs: int = 30
    batch_size: int = 4
    optimizer: Literal["sgd", "adamw"] = "sgd"  # sgd: the paper's
    lr: float = 1e-5
    momentum: float = 0.9
    weight_decay: float = 0.0
    freeze_vit_epochs: int = 10  # the ViT is frozen for these first epochs, then fine-tuned
    loss: Literal["ce", "focal"] = "ce"
    focal_gamma: float = 2.0
    synthetic_ratio: float = 0.3  # share of the training set drawn from the synthetic folder, if given
    seed: int = 0
    threads: int = 2
    vit_weights: str = ""        # local ViT weights file ("" = random init; no hub downloads)
    missing_audio: Literal["error", "silence"] = "error"
    # Which clips choose best.pt: "train" holds out select_fraction of the training clips (stratified,
    # seeded) and reports --val once; "val" selects and reports on --val (EmotiW practice, optimistic).
    select_on: Literal["train", "val"] = "train"
    select_fraction: float = 0.1

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
    """A TrainConfig from a flat YAML file, then ``overrides`` (None values are ignored); any mistake,
    a model the numbers cannot make included, is one line naming the file."""
    cfg = load(TrainConfig, path, **overrides)
    try:
        cfg.model_config()
    except ValueError as e:
        raise DataError(path or "TrainConfig", str(e)) from None
    return cfg


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


# ----------------------------------------------------------------------------- training
def _hardware(hardware: Optional[Hardware], cfg: TrainConfig) -> Hardware:
    """While the ViT is frozen its weights get no gradient: DDP must expect that
    (``find_unused_parameters``), or it stops at the second step."""
    hw = hardware or Hardware()
    if cfg.modality == "audio" or cfg.freeze_vit_epochs <= 0 or hw.strategy not in ("auto", "ddp"):
        return hw
    if hw.strategy == "ddp" or hw.processes() > 1:
        return dataclasses.replace(hw, strategy="ddp_find_unused_parameters_true")
    return hw


def _eval_device(hardware: Optional[Hardware]) -> str:
    """Evaluate where training ran: a paper-size ViT over a validation set is hours on a CPU."""
    hw = hardware or Hardware()
    return "cuda" if hw.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu"


def predict_probs(model, loader) -> tuple:
    """Softmax probabilities (N, K), labels (N,) and ids of a loader, in order, on the model's device."""
    device = next(model.parameters()).device
    model.eval()
    probs, labels, ids = [], [], []
    with torch.no_grad():
        for batch in loader:
            logits = model(video=batch["video"].to(device), audio=batch["audio"].to(device))
            probs.append(torch.softmax(logits.float(), -1).cpu().numpy())
            labels.append(batch["label"].numpy())
            ids += list(batch["id"])
    if not probs:
        return np.zeros((0, len(CLASSES))), np.zeros(0, np.int64), ids
    return np.concatenate(probs), np.concatenate(labels), ids


def load_model(checkpoint: Path):
    """``(model, TrainConfig)`` from a checkpoint of :func:`train` (``best.pt``/``last.pt``, or a file
    written before the engine), on the CPU in eval mode."""
    ck = load_checkpoint(checkpoint)
    model_cfg, train_cfg = ck["model"], ck["train"]
    if {"model", "train"} <= set(model_cfg):  # format 1 kept both configs under "config"
        model_cfg, train_cfg = model_cfg["model"], model_cfg["train"]
    try:
        model = build_model(config_from_dict(model_cfg))
        model.load_state_dict(ck["state_dict"])
    except (DataError, TypeError, ValueError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(checkpoint, f"not a group checkpoint ({first[:160]})") from None
    model.eval()
    return model, from_dict(TrainConfig, train_cfg, source=checkpoint)


# ----------------------------------------------------------------------------- commands
def train(cfg: TrainConfig, data: Optional[Path], out: Path, val: Optional[Path] = None,
          synthetic: Optional[Path] = None, cache: Optional[Path] = None, on_error: str = "skip",
          resume: bool = True, progress: bool = True, log: Log = print, hardware: Optional[Hardware] = None) -> dict:
    """Index, cache features, mix synthetic clips at ``cfg.synthetic_ratio``, fit on the engine
    (resuming from ``out/last.pt``), then evaluate ``best.pt`` on ``val``.

    ``data`` may be None when training on synthetic clips only (Table 2's ``synt_video`` rows).
    Every DDP process runs this; only rank 0 (``result["is_global_zero"]``) evaluates and plots.
    """
    # Lightning only when training: evaluating and predicting never import it (what it pulls in is
    # outside the group room's privacy rule; tests/group/test_privacy.py)
    from affectlens.group.train_module import GroupModule
    from affectlens.training.engine import fit, loader

    torch.set_num_threads(cfg.threads)
    out = Path(out)
    train_ds, select_ds, val_ds, problems = _datasets(cfg, data, val, synthetic, cache, on_error, progress, log)
    select_dl = loader(select_ds, max(cfg.batch_size, 8)) if select_ds is not None and len(select_ds) else None
    res = fit(GroupModule(cfg), loader(train_ds, cfg.batch_size, shuffle=True, seed=cfg.seed), select_dl, out=out,
              epochs=cfg.epochs, hardware=_hardware(hardware, cfg), resume=resume,
              progress=None if progress else False)
    selected_on = ("none (the last epoch)" if select_dl is None else "val" if select_ds is val_ds
                   else f"{len(select_ds)} training clips held out ({cfg.select_fraction:.0%})")
    result = {"history": res.history, "best": str(res.best_path), "last": str(res.last_path),
              "best_epoch": res.best, "n_train": len(train_ds), "problems": problems, "selected_on": selected_on,
              "is_global_zero": res.is_global_zero, "world_size": res.world_size}
    if not res.is_global_zero:
        return result
    if val_ds is not None and len(val_ds):
        result["eval"] = evaluate_dataset(res.best_path, val_ds, out / "eval", device=_eval_device(hardware))
        result["eval"]["selected_on"] = selected_on
        write_json(out / "eval" / "eval.json", result["eval"])
    curves_png({k: v for k, v in res.history.items() if k.endswith("_acc")}, out / "curves.png",
               title=f"group {cfg.modality} ({cfg.frames} frames)")
    return result


def hold_out(items: Sequence[VgafItem], fraction: float, seed: int) -> tuple[list, list]:
    """``(kept, held_out)``: about ``fraction`` of the items of every label, drawn with ``seed`` (at
    least one per label that has two or more items), for choosing the epoch."""
    rng = np.random.default_rng(seed)
    held: set = set()
    for label in sorted({it.label for it in items}):
        idx = [i for i, it in enumerate(items) if it.label == label]
        n = min(len(idx) - 1, max(1, int(round(fraction * len(idx))))) if fraction > 0 else 0
        held |= {idx[j] for j in rng.permutation(len(idx))[:n]}
    return ([it for i, it in enumerate(items) if i not in held], [it for i, it in enumerate(items) if i in held])


def _datasets(cfg: TrainConfig, data, val, synthetic, cache, on_error: str, progress: bool, log: Log) -> tuple:
    """``(training set, selection set or None, validation set or None, problems)``: real clips plus
    the synthetic ones mixed in; the selection set is held out of the training clips
    (``select_on: train``) or is the validation set (``select_on: val``)."""
    spec = cfg.feature_spec()
    real, real_cache, problems = prepare(data, cfg, cache, on_error, progress, log) if data else ([], None, [])
    syn, syn_cache = [], None
    if synthetic is not None:
        syn, syn_cache, syn_problems = prepare(synthetic, cfg, None, on_error, progress, log)
        problems += syn_problems
    held, held_cache = [], None
    if cfg.select_on == "train":  # from the real clips; from the synthetic ones only when there are none
        if real:
            real, held = hold_out(real, cfg.select_fraction, cfg.seed)
            held_cache = real_cache
        elif syn:
            syn, held = hold_out(syn, cfg.select_fraction, cfg.seed)
            held_cache = syn_cache
    items, caches = list(real), {}
    if synthetic is not None:
        items = mix_synthetic(real, syn, cfg.synthetic_ratio, cfg.seed)
        caches.update({it.name: syn_cache for it in items[len(real):]})
        log(f"training set: {len(real)} real + {len(items) - len(real)} synthetic clips")
    train_ds = _MultiCache(items, caches, real_cache, spec)
    if not len(train_ds):
        raise DataError(data or synthetic, "no usable training clips")
    val_ds = None
    if val is not None:
        v_items, v_cache, v_problems = prepare(val, cfg, None, on_error, progress, log)
        problems += v_problems
        val_ds = GroupClips(v_items, v_cache, spec)
    select_ds = GroupClips(held, held_cache, spec) if held else (val_ds if cfg.select_on == "val" else None)
    return train_ds, select_ds, val_ds, problems


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


def evaluate_dataset(checkpoint: Path, ds, out: Path, device: str = "cpu") -> dict:
    """Accuracy, per-class P/R/F1 and the confusion matrix (JSON + PNG) of a checkpoint on ``ds``."""
    model, cfg = load_model(checkpoint)
    p, y, ids = predict_probs(model.to(device), torch.utils.data.DataLoader(ds, batch_size=8))
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
    check_window(window, hop)
    cfg = model.cfg
    duration = probe(path).duration
    timeline_min = 1.5 * window if timeline_min is None else timeline_min
    starts = window_starts(duration, window, hop) if duration > timeline_min else np.zeros(1)
    length = min(window, duration) if duration > timeline_min else duration
    probs = []
    with torch.no_grad():
        for chunk in iter_window_features(path, starts, length, cfg.n_video, cfg.n_audio, cfg.img_size, "silence"):
            video, audio = to_model_inputs(chunk["video"], chunk["audio"])  # (B, T, 3, S, S), (B, F, 1, 128, 251)
            probs.append(torch.softmax(model(video=video, audio=audio), -1).numpy())
    p = np.concatenate(probs)
    windows = [{"start": float(s), "end": float(s + length), "probs": dict(zip(CLASSES, map(float, q))),
                "label": CLASSES[int(q.argmax())]} for s, q in zip(starts, p)]
    mean = p.mean(0)
    return {"video": str(path), "duration": duration, "mode": "timeline" if len(starts) > 1 else "clip",
            "probs": dict(zip(CLASSES, map(float, mean))), "label": CLASSES[int(mean.argmax())], "windows": windows}


def check_window(window: float, hop: float) -> None:
    """Refuse a timeline that cannot be laid out (before any work)."""
    for name, v in (("window", window), ("hop", hop)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise AffectlensError(f"{name} must be a finite number of seconds > 0, not {v!r}")


def predict_one(video: Path, model, window: float, hop: float, pngs: Dict[Path, Path]) -> dict:
    """One video's prediction, with its timeline PNG when it is long (module level, for Ray)."""
    r = predict_video(model, video, window, hop)
    if r["mode"] == "timeline":
        centres = [(w["start"] + w["end"]) / 2 for w in r["windows"]]
        probs = [[w["probs"][c] for c in CLASSES] for w in r["windows"]]
        r["timeline_png"] = str(timeline_png(centres, probs, CLASSES, pngs[video], title=video.name))
    return r


def timeline_paths(videos: Sequence[Path], out: Path) -> Dict[Path, Path]:
    """``OUT/<stem>_timeline.png`` per video; videos that share a stem get their folder's name too."""
    stems: Dict[str, int] = {}
    for v in videos:
        stems[Path(v).stem] = stems.get(Path(v).stem, 0) + 1
    paths: Dict[Path, Path] = {}
    for k, v in enumerate(videos):
        v = Path(v)
        name = v.stem if stems[v.stem] == 1 else f"{v.parent.name or 'root'}_{v.stem}_{k}"
        paths[v] = out / f"{name}_timeline.png"
    return paths


def predict(checkpoint: Path, videos: Sequence[Path], out: Path, window: float = 5.0, hop: float = 2.5,
            log: Log = print, *, backend: str = "local", address: Optional[str] = None,
            num_workers: Optional[int] = None, progress: bool = True) -> dict:
    """Predict every video; writes ``predictions.json``, ``predictions.csv`` and a timeline PNG per
    long video. The videos go through the one batch runner (:func:`affectlens.scale.run_batch`,
    locally or over Ray): a bad file is reported and skipped; ``window``/``hop`` and ``out`` are
    checked first."""
    check_window(window, hop)
    out = Path(out)
    videos = list(dict.fromkeys(Path(v) for v in videos))  # a video named twice is predicted once
    check_output(out, kind="dir", inputs=[*videos, checkpoint])
    model, _ = load_model(checkpoint)
    res = run_batch(videos, partial(predict_one, model=model, window=window, hop=hop, pngs=timeline_paths(videos, out)),
                    None, backend=backend, address=address, num_workers=num_workers, description="group predict",
                    progress=progress)
    results, failed = [r for _, r in res.done], res.failure_lines()
    for line in failed:
        log(f"failed: {line}")
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
