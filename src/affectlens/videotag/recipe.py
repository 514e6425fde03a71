"""Recipes: train / evaluate / predict video taggers on YouTube-8M shards (video or frame level).

Setup → fit → evaluate. Models are trained only on the classes that occur in the training set
(a class never seen cannot be learnt; it scores 0), which keeps the 3,862-way heads small enough
for a CPU; predictions are mapped back to all 3,862 columns before any metric.
"""
from __future__ import annotations

import csv
import dataclasses
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
    """A flat YAML recipe: TrainConfig keys at the top level, ``model: <kind>`` (``logistic``,
    ``moe``...) or a named size (``moe_a``, ``dbof_tiny``...) names the model, and every other key
    is a field of that model's config, overriding the size's (checked: ``num_expert: 8`` is an
    error, not a silently ignored key)."""
    from affectlens.config import from_dict, read_yaml

    raw = read_yaml(path) if path is not None else {}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"model"}
    train_kw = {k: raw.pop(k) for k in list(raw) if k in names}
    model = raw.pop("model", "moe")
    if isinstance(model, str) and model in M.BUILDERS:  # a named size; the file's other keys override it
        named = dataclasses.asdict(M.BUILDERS[model](input_dim=1, num_classes=1))
        model = {k: v for k, v in named.items() if k not in ("input_dim", "num_classes")}
        model.update(raw)
    model = dict(model) if isinstance(model, dict) else {"kind": model, **raw}
    kind = model.get("kind")
    if kind not in M.KINDS:
        names = ", ".join([*sorted(M.KINDS), *sorted(M.BUILDERS)])
        raise DataError(path or "config", f"model: expected one of {names}, got {kind!r}")
    probe = {**model, "input_dim": 1, "num_classes": 1}
    probe.pop("kind")
    from_dict(M.KINDS[kind][0], probe, source=path or "")  # every model key is a field of that kind
    return from_dict(TrainConfig, {**train_kw, "model": model}, source=path or "")


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


class SplitSet:
    """A Split as batches ``{"x", "lengths"?, "y"}`` fetched with one fancy index per batch
    (``__getitems__``), so a DataLoader never stacks thousands of per-video tensors."""

    def __init__(self, split: Split, classes: np.ndarray):
        self.split, self.y = split, split.y[:, classes]

    def __len__(self) -> int:
        return len(self.split.ids)

    def __getitems__(self, idx: list[int]) -> dict:
        import torch

        idx = np.sort(np.asarray(idx))
        x, lengths = _inputs(self.split, idx)
        batch = {"x": x, "y": torch.from_numpy(self.y[idx].astype(np.float32))}
        if lengths is not None:
            batch["lengths"] = lengths
        return batch


def fit(model, split: Split, classes: np.ndarray, cfg: TrainConfig, out_dir: Path | None = None,
        log: Callable[[str], None] = print, eval_split: Split | None = None, hardware=None, resume: bool = True,
        callbacks: Sequence = ()):
    """Train ``model`` on ``split`` through the engine into ``out_dir`` (a temporary folder when
    None); ``eval_split`` selects ``best.pt`` by GAP. Returns the engine's FitResult."""
    import tempfile

    from affectlens.training.engine import fit as engine_fit
    from affectlens.training.engine import loader

    from affectlens.videotag.train_module import VideotagModule

    module = VideotagModule(model, classes, cfg, split.y[:, classes])
    train_loader = loader(SplitSet(split, classes), cfg.batch_size, shuffle=True, seed=cfg.seed, collate_fn=_as_batch)
    val_loader = (loader(SplitSet(eval_split, classes), 1024, collate_fn=_as_batch) if eval_split is not None
                  and len(eval_split.ids) else None)
    with tempfile.TemporaryDirectory(prefix="videotag_fit_") as tmp:
        out = Path(out_dir) if out_dir is not None else Path(tmp)
        return engine_fit(module, train_loader, val_loader, out=out, epochs=cfg.epochs, hardware=hardware,
                          resume=resume and out_dir is not None, progress=False if out_dir is None else None,
                          callbacks=callbacks)


def _as_batch(batch: dict) -> dict:
    """The DataLoader's collate step for :class:`SplitSet`, whose batches come already stacked."""
    return batch


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
          eval_paths: Sequence[Path] | None = None, log: Callable[[str], None] = print, hardware=None,
          resume: bool = True, callbacks: Sequence = ()) -> dict:
    """Train on ``train_paths`` into the run folder ``out_dir`` (``best.pt`` selected by eval GAP
    when ``eval_paths`` are given, ``last.pt``, ``metrics.json``; see the training engine) and
    evaluate ``best.pt`` on ``eval_paths``. Returns the metrics (empty without evaluation)."""
    import torch

    from affectlens.utils import write_json

    out_dir = Path(out_dir)
    torch.set_num_threads(cfg.threads)
    frame_level = cfg.model.get("kind") in ("dbof", "lstm")
    split = load_split(train_paths, cfg.modalities, frame_level, cfg.max_frames)
    if not split.ids:
        raise DataError(train_paths[0] if train_paths else out_dir, "no training videos")
    ev = load_split(eval_paths, cfg.modalities, frame_level, cfg.max_frames) if eval_paths else None
    classes = np.flatnonzero(split.y.any(0))
    from affectlens.training.seed import seed_everything

    seed_everything(cfg.seed)
    model = M.build_model(_model_config(cfg, split.x.shape[-1], len(classes)))
    log(f"{len(split.ids)} training videos, {len(classes)} classes seen, input {split.x.shape[-1]}-d, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters")
    res = fit(model, split, classes, cfg, out_dir, log, ev, hardware, resume, callbacks)
    if not res.is_global_zero or ev is None:
        return {}
    best, _, _ = load_model(res.best_path)
    metrics = _metrics(predict_scores(best, ev, classes), ev.y, cfg.top_k)
    metrics.update(videos=len(ev.ids), train_videos=len(split.ids), best_epoch=res.best.get("epoch"))
    import json

    summary = json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))
    write_json(out_dir / "metrics.json", {**summary, "eval": metrics})  # the engine's summary + best.pt's scores
    try:
        from affectlens.report.plots import curves_png

        curves_png({k: v for k, v in res.history.items() if k != "epoch_seconds"}, out_dir / "curves.png")
    except Exception as e:  # a plot must never fail a finished training run
        log(f"(no curve plot: {e})")
    return metrics


def load_model(checkpoint: str | Path):
    """(model, classes, TrainConfig) from a ``best.pt``/``last.pt`` written by :func:`train`."""
    from affectlens.config import from_dict
    from affectlens.training import load_checkpoint

    state = load_checkpoint(checkpoint)
    extra = state.get("extra") or {}
    try:
        config = M.config_from_dict(state["model"])
        classes = np.asarray(extra["classes"], np.int64)
    except (TypeError, ValueError, KeyError) as e:
        raise DataError(checkpoint, f"not a videotag checkpoint ({e})") from None
    model = M.build_model(config)
    model.load_state_dict(state["state_dict"])
    tc = {k: v for k, v in dict(state.get("train") or {}).items() if k != "model"}
    cfg = from_dict(TrainConfig, {**tc, "model": dataclasses.asdict(config)}, source=checkpoint, skip_unknown=True)
    return model.eval(), classes, cfg


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
               min_class_count: int = 1, hardware=None) -> np.ndarray:
    """Train ``cfg.model`` on arrays (on the engine, with ``hardware``) and return eval
    probabilities (N_eval, classes of y_train).

    Only classes with at least ``min_class_count`` training videos are modelled (others score 0)."""
    import torch

    from affectlens.training import seed_everything

    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    classes = np.flatnonzero(y_train.sum(0) >= max(min_class_count, 1))
    lt, le = lengths if lengths is not None else (None, None)
    model = M.build_model(_model_config(cfg, x_train.shape[-1], len(classes)))
    fit(model, Split(list(range(len(x_train))), x_train, y_train, lt), classes, cfg, None, log, hardware=hardware)
    model.eval()
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
