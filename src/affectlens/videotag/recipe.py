"""Recipes: train / evaluate / predict video taggers on YouTube-8M shards (video or frame level).

Setup → fit → evaluate. Models are trained only on the classes that occur in the training set
(a class never seen cannot be learnt; it scores 0), which keeps the 3,862-way heads small enough
for a CPU; predictions are mapped back to all 3,862 columns before any metric.
"""
from __future__ import annotations

import csv
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from affectlens.errors import DataError
from affectlens.videotag import data as D
from affectlens.videotag import models as M

__all__ = ["TrainConfig", "load_config", "Split", "load_split", "fit", "predict_scores", "train",
           "evaluate", "predict", "write_kaggle_csv", "demo_run"]


@dataclass(frozen=True)
class TrainConfig:
    """One experiment: model (a dict with ``kind`` + that config's fields) and how to fit it."""

    model: dict = field(default_factory=lambda: {"kind": "moe", "num_experts": 2})
    modalities: tuple = ("rgb", "audio")
    epochs: int = 8
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-6
    seed: int = 0
    threads: int = 2
    max_frames: int = 300  # frame level only
    top_k: int = 20


def load_config(path: str | Path | None = None, **overrides) -> TrainConfig:
    """Read a flat YAML recipe: TrainConfig keys at the top level, every other key goes to the model
    (``model: moe`` names the kind)."""
    raw: dict = {}
    if path is not None:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise DataError(path, "config file not found")
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise DataError(path, "config must be a mapping")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"model"}
    train_kw = {k: raw.pop(k) for k in list(raw) if k in names}
    if "modalities" in train_kw:
        train_kw["modalities"] = tuple(train_kw["modalities"])
    for key in ("lr", "weight_decay"):
        if key in train_kw:
            train_kw[key] = float(train_kw[key])
    model = {"kind": raw.pop("model", "moe")}
    model.update(raw)
    return TrainConfig(model=model, **train_kw)


@dataclass
class Split:
    """Features of one split: ``x`` (N, D) or (N, T, D) with ``lengths`` (N,), ``y`` bool (N, 3862)."""

    ids: list
    x: np.ndarray
    y: np.ndarray
    lengths: np.ndarray | None = None


def load_split(paths: Sequence[Path], modalities: Sequence[str], frame_level: bool = False,
               max_frames: int = 300) -> Split:
    """Read shards into a Split (video-level ``Example`` or frame-level ``SequenceExample``)."""
    if not frame_level:
        vl = D.read_video_level(paths)
        return Split(vl.ids, vl.features(tuple(modalities)), vl.targets())
    videos = list(D.iter_frame_level(paths, max_frames=max_frames))
    t = max([len(v.rgb) for v in videos] + [1])
    dim = sum(D.RGB_DIM if m == "rgb" else D.AUDIO_DIM for m in modalities)
    x = np.zeros((len(videos), t, dim), np.float32)
    lengths = np.array([len(v.rgb) for v in videos], np.int64)
    for i, v in enumerate(videos):
        x[i, :len(v.rgb)] = np.concatenate([getattr(v, m) for m in modalities], axis=1)
    return Split([v.id for v in videos], x, D.multi_hot([v.labels for v in videos]), lengths)


def _batches(n: int, size: int, rng: np.random.Generator | None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for s in range(0, n, size):
        yield order[s:s + size]


def _inputs(split: Split, idx: np.ndarray):
    import torch

    x = torch.from_numpy(split.x[idx])
    lengths = torch.from_numpy(split.lengths[idx]) if split.lengths is not None else None
    return x, lengths


def fit(model, split: Split, classes: np.ndarray, cfg: TrainConfig, out_dir: Path | None = None,
        log: Callable[[str], None] = print) -> dict:
    """Adam + BCE (summed over classes, mean over videos, as the starter code); a checkpoint per
    epoch in ``out_dir/last.pt``; resumes from it when present. Returns the loss history."""
    import torch

    from affectlens.training import load_checkpoint, save_checkpoint

    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history, start = {"loss": []}, 0
    ckpt = out_dir / "last.pt" if out_dir is not None else None
    if ckpt is not None and ckpt.is_file():
        state = load_checkpoint(ckpt)
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        history, start = state["history"], int(state["epoch"])
        log(f"resumed from {ckpt} after epoch {start}")
    y = split.y[:, classes]
    if start == 0:
        M.init_prior(model, torch.from_numpy(y.mean(0).astype(np.float32)))
    rng = np.random.default_rng(cfg.seed + start)
    for epoch in range(start, cfg.epochs):
        model.train()
        total, t0 = 0.0, time.time()
        for idx in _batches(len(split.ids), cfg.batch_size, rng):
            x, lengths = _inputs(split, idx)
            logits = model(x, lengths)
            target = torch.from_numpy(y[idx].astype(np.float32))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="sum") / len(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        history["loss"].append(total / max(len(split.ids), 1))
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss {history['loss'][-1]:.3f} ({time.time() - t0:.1f} s)")
        if ckpt is not None:
            save_checkpoint(ckpt, model, model.config, optimizer=opt.state_dict(), history=history,
                            epoch=epoch + 1, classes=classes.tolist(), train_config=_cfg_dict(cfg))
    return history


def _cfg_dict(cfg: TrainConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["modalities"] = list(d["modalities"])
    return d


def predict_scores(model, split: Split, classes: np.ndarray, num_classes: int = D.NUM_CLASSES,
                   batch_size: int = 512) -> np.ndarray:
    """Probabilities (N, num_classes) float32; classes the model does not know score 0."""
    import torch

    model.eval()
    out = np.zeros((len(split.ids), num_classes), np.float32)
    with torch.no_grad():
        for idx in _batches(len(split.ids), batch_size, None):
            x, lengths = _inputs(split, idx)
            out[np.ix_(idx, classes)] = torch.sigmoid(model(x, lengths)).numpy()
    return out


def _model_config(cfg: TrainConfig, input_dim: int, num_classes: int):
    return M.config_from_dict({**cfg.model, "input_dim": input_dim, "num_classes": num_classes})


def _metrics(scores: np.ndarray, y: np.ndarray, top_k: int = 20) -> dict:
    from affectlens.metrics.multilabel import all_metrics

    return all_metrics(scores, y, top_k)


def train(cfg: TrainConfig, train_paths: Sequence[Path], out_dir: str | Path,
          eval_paths: Sequence[Path] | None = None, log: Callable[[str], None] = print) -> dict:
    """Train on ``train_paths``; write ``out_dir/model.pt`` (+ ``metrics.json`` and a curve plot when
    ``eval_paths`` are given). Returns the metrics (empty without evaluation)."""
    import torch

    from affectlens.training import save_checkpoint, seed_everything
    from affectlens.utils import write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    frame_level = cfg.model.get("kind") in ("dbof", "lstm")
    split = load_split(train_paths, cfg.modalities, frame_level, cfg.max_frames)
    if not split.ids:
        raise DataError(train_paths[0] if train_paths else out_dir, "no training videos")
    classes = np.flatnonzero(split.y.any(0))
    model = M.build_model(_model_config(cfg, split.x.shape[-1], len(classes)))
    log(f"{len(split.ids)} training videos, {len(classes)} classes seen, input {split.x.shape[-1]}-d, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters")
    history = fit(model, split, classes, cfg, out_dir, log)
    save_checkpoint(out_dir / "model.pt", model, model.config, classes=classes.tolist(),
                    train_config=_cfg_dict(cfg), history=history)
    metrics: dict = {}
    if eval_paths:
        ev = load_split(eval_paths, cfg.modalities, frame_level, cfg.max_frames)
        metrics = _metrics(predict_scores(model, ev, classes), ev.y, cfg.top_k)
        metrics.update(videos=len(ev.ids), train_videos=len(split.ids))
        write_json(out_dir / "metrics.json", metrics)
    try:
        from affectlens.report.plots import curves_png

        curves_png(history, out_dir / "curves.png")
    except Exception as e:  # a plot must never fail a finished training run
        log(f"(no curve plot: {e})")
    return metrics


def load_model(checkpoint: str | Path):
    """(model, classes, TrainConfig) from a ``model.pt`` written by :func:`train`."""
    from affectlens.training import load_checkpoint

    state = load_checkpoint(checkpoint)
    try:
        config = M.config_from_dict(state["config"])
    except (TypeError, ValueError) as e:
        raise DataError(checkpoint, f"not a videotag checkpoint ({e})") from None
    model = M.build_model(config)
    model.load_state_dict(state["state_dict"])
    tc = dict(state.get("train_config", {}))
    tc.pop("model", None)
    cfg = TrainConfig(model=dataclasses.asdict(config), **{**tc, "modalities": tuple(tc.get("modalities", ("rgb", "audio")))})
    return model, np.asarray(state["classes"], np.int64), cfg


def evaluate(checkpoint: str | Path, paths: Sequence[Path]) -> dict:
    """GAP / Hit@1 / PERR / mAP of a trained model on shards."""
    model, classes, cfg = load_model(checkpoint)
    split = load_split(paths, cfg.modalities, M.is_frame_level(model.config), cfg.max_frames)
    metrics = _metrics(predict_scores(model, split, classes), split.y, cfg.top_k)
    metrics["videos"] = len(split.ids)
    return metrics


def write_kaggle_csv(path: str | Path, ids: Sequence[str], scores: np.ndarray, top_k: int = 20) -> Path:
    """The Kaggle submission: ``VideoId,LabelConfidencePairs`` with the top ``k`` as "label score ..."."""
    from affectlens.metrics.multilabel import top_k_by_video
    from affectlens.utils import atomic_path

    idx, val = top_k_by_video(scores, top_k)  # best first
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["VideoId", "LabelConfidencePairs"])
            for vid, ii, vv in zip(ids, idx, val):
                w.writerow([vid, " ".join(f"{i:d} {v:.6f}" for i, v in zip(ii, vv))])
    return Path(path)


def predict(checkpoint: str | Path, paths: Sequence[Path], out_csv: str | Path, top_k: int = 20) -> Path:
    """Score shards and write ``predictions.csv`` in the Kaggle format."""
    model, classes, cfg = load_model(checkpoint)
    split = load_split(paths, cfg.modalities, M.is_frame_level(model.config), cfg.max_frames)
    return write_kaggle_csv(out_csv, split.ids, predict_scores(model, split, classes), top_k)


# ---------------------------------------------------------------------------- small shared helpers

def fit_scores(x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, cfg: TrainConfig,
               log: Callable[[str], None] = print, lengths: tuple | None = None,
               min_class_count: int = 1) -> np.ndarray:
    """Train ``cfg.model`` on arrays and return eval probabilities (N_eval, classes of y_train).

    Only classes with at least ``min_class_count`` training videos are modelled (others score 0)."""
    import torch

    from affectlens.training import seed_everything

    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    classes = np.flatnonzero(y_train.sum(0) >= max(min_class_count, 1))
    lt, le = lengths if lengths is not None else (None, None)
    model = M.build_model(_model_config(cfg, x_train.shape[-1], len(classes)))
    fit(model, Split(list(range(len(x_train))), x_train, y_train, lt), classes, cfg, None, log)
    return predict_scores(model, Split(list(range(len(x_eval))), x_eval, np.zeros((len(x_eval), 0), bool), le),
                          classes, y_train.shape[1])


def demo_run(out_dir: str | Path, epochs: int = 4, log: Callable[[str], None] = print) -> dict:
    """Sub-minute demo on synthetic class-prototype features written as real TFRecords:
    logistic vs MoE, visual vs visual+audio, and mean/max ensembles. Returns JSON-able metrics."""
    from affectlens.metrics.multilabel import all_metrics
    from affectlens.utils import write_json
    from affectlens.videotag import ensemble as E
    from affectlens.videotag.synth import synth_video_level

    out_dir = Path(out_dir)
    paths = synth_video_level(out_dir / "shards", num_shards=4, videos_per_shard=150, num_classes=40)
    tr, ev = D.read_video_level(paths[:3]), D.read_video_level(paths[3:])
    ytr, yev = tr.targets(), ev.targets()
    runs = {"logistic rgb+audio": ("logistic", ("rgb", "audio")), "moe rgb+audio": ("moe", ("rgb", "audio")),
            "moe rgb": ("moe", ("rgb",)), "moe audio": ("moe", ("audio",))}
    results, scores = {}, {}
    for name, (kind, mods) in runs.items():
        cfg = TrainConfig(model={"kind": kind, **({"num_experts": 2} if kind == "moe" else {})},
                          modalities=mods, epochs=epochs, batch_size=64, lr=3e-3, threads=1)
        scores[name] = fit_scores(tr.features(mods), ytr, ev.features(mods), cfg, log=lambda s: None)
        results[name] = all_metrics(scores[name], yev)
        log(f"{name}: GAP {results[name]['gap']:.3f}")
    both = [scores["logistic rgb+audio"], scores["moe rgb+audio"]]
    results["mean ensemble"] = all_metrics(E.mean_ensemble(both), yev)
    results["max ensemble"] = all_metrics(E.max_ensemble(both), yev)
    summary = {"synthetic": True, "train_videos": len(tr), "eval_videos": len(ev), "results": results}
    write_json(out_dir / "metrics.json", summary)
    return summary
