"""Recipes: train / evaluate / predict video taggers on YouTube-8M shards (video or frame level).

Setup → fit → evaluate. Training, evaluation and prediction read the shards as a stream
(:class:`affectlens.videotag.data.ShardStream`: any number of files, folders or globs; shard-level
shuffling, a shuffle buffer, one reader per worker and DDP rank), so memory never holds a split.
The default recipe is the YouTube-8M starter code's (batch 1024, Adam lr 0.01 decayed 0.95 every
4 M examples, L2 1e-8 on the weights, a 2-mixture MoE), with biases started at the label prior and
``best.pt`` chosen by GAP on the validation shards. Models cover every class of the release
(3,862 in 2018, 4,716 in 2017).

The in-memory helpers (:class:`Split`, :func:`fit_scores`) serve the Table 5/6 ablation, whose
text features are computed in memory, and the demo.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from affectlens.config import from_dict, read_yaml
from affectlens.errors import AffectlensError, DataError, failure_line
from affectlens.files import atomic_path, write_json
from affectlens.metrics.multilabel import TopK, all_metrics, top_k_by_video
from affectlens.report.plots import curves_png
from affectlens.training import load_checkpoint, seed_everything
from affectlens.videotag import data as D
from affectlens.videotag import ensemble as E
from affectlens.videotag import models as M

__all__ = ["TrainConfig", "load_config", "Split", "load_split", "fit", "predict_scores", "train",
           "evaluate", "predict", "stream_of", "score_stream", "run_ensemble"]


@dataclass(frozen=True)
class TrainConfig:
    """One experiment: model (a dict with ``kind`` + that config's fields) and how to fit it.

    Defaults are the starter code's recipe (``train.py``: batch 1024, Adam 0.01, decay 0.95 per
    4 M examples, ``l2_penalty`` 1e-8 on the weights); ``patience`` stops after that many epochs
    without a better validation GAP (0: run every epoch, keep the best)."""

    model: dict = field(default_factory=lambda: {"kind": "moe", "num_experts": 2})
    modalities: tuple = ("rgb", "audio")
    epochs: int = 8
    batch_size: int = 1024
    lr: float = 0.01
    lr_decay: float = 0.95
    lr_decay_examples: int = 4_000_000
    weight_decay: float = 1e-8   # the starter code's l2_penalty, on weights only
    label_smoothing: float = 0.0  # targets pulled towards the label prior
    patience: int = 0
    release: str = "2018"        # 2018: 3,862 classes, key "id"; 2017: 4,716, key "video_id"
    num_workers: int = 1         # stream readers (DataLoader workers) per process
    shuffle_buffer: int = 0      # videos; 0 = 8,192 video level, 256 frame level
    shard_cache: bool = False    # video level: read shards through the decoded-shard cache (data.decoded_shard)
    seed: int = 0
    threads: int = 2
    max_frames: int = 300  # frame level only
    top_k: int = 20

    @property
    def num_classes(self) -> int:
        return D.RELEASES[self.release]

    @property
    def frame_level(self) -> bool:
        return self.model.get("kind") in M.FRAME_KINDS


def load_config(path: str | Path | None = None, **overrides) -> TrainConfig:
    """A flat YAML recipe: TrainConfig keys at the top level, ``model: <kind>`` (``logistic``,
    ``moe``...) or a named size (``moe_a``, ``dbof_tiny``...) names the model, and every other key
    is a field of that model's config, overriding the size's (checked: ``num_expert: 8`` is an
    error, not a silently ignored key)."""
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
    cfg = from_dict(TrainConfig, {**train_kw, "model": model}, source=path or "")
    if cfg.release not in D.RELEASES:
        raise DataError(path or "config", f"release: expected one of {', '.join(D.RELEASES)}, got {cfg.release!r}")
    return cfg


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
        idx = np.sort(np.asarray(idx))
        x, lengths = _inputs(self.split, idx)
        batch = {"x": x, "y": torch.from_numpy(self.y[idx].astype(np.float32))}
        if lengths is not None:
            batch["lengths"] = lengths
        return batch


def fit(model, split: Split, classes: np.ndarray, cfg: TrainConfig, out_dir: Path | None = None,
        log: Callable[[str], None] = print, eval_split: Split | None = None, hardware=None, resume: bool = True,
        callbacks: Sequence = ()):
    """Train ``model`` on an in-memory ``split`` through the engine into ``out_dir`` (a temporary
    folder when None); ``eval_split`` selects ``best.pt`` by GAP. Returns the engine's FitResult."""
    train_set = SplitSet(split, classes)
    val_set = SplitSet(eval_split, classes) if eval_split is not None and len(eval_split.ids) else None
    return _fit(model, train_set, val_set, classes, cfg, split.y[:, classes].mean(0), out_dir, hardware, resume,
                callbacks)


def _fit(model, train_set, val_set, classes: np.ndarray, cfg: TrainConfig, prior: np.ndarray,
         out_dir: Path | None, hardware, resume: bool, callbacks: Sequence):
    """The one call into the engine for both the in-memory and the streaming paths."""
    # Lightning only when training: evaluating and predicting a trained model never import it
    from affectlens.training.engine import fit as engine_fit
    from affectlens.training.engine import loader
    from affectlens.videotag.train_module import VideotagModule

    module = VideotagModule(model, classes, cfg, prior)
    streaming = isinstance(train_set, D.ShardStream)
    kw = {} if streaming else {"collate_fn": _as_batch}
    workers = cfg.num_workers if streaming else 0
    train_loader = loader(train_set, cfg.batch_size, shuffle=True, seed=cfg.seed, num_workers=workers, **kw)
    val_loader = loader(val_set, 1024, num_workers=workers, **kw) if val_set is not None else None
    with tempfile.TemporaryDirectory(prefix="videotag_fit_") as tmp:
        out = Path(out_dir) if out_dir is not None else Path(tmp)
        return engine_fit(module, train_loader, val_loader, out=out, epochs=cfg.epochs, hardware=hardware,
                          resume=resume and out_dir is not None, progress=False if out_dir is None else None,
                          callbacks=callbacks, patience=cfg.patience or None)


def _as_batch(batch: dict) -> dict:
    """The DataLoader's collate step for :class:`SplitSet`, whose batches come already stacked."""
    return batch


def predict_scores(model, split: Split, classes: np.ndarray, num_classes: int = D.NUM_CLASSES,
                   batch_size: int = 512) -> np.ndarray:
    """Probabilities (N, num_classes) float32 of an in-memory split; classes the model does not
    know score 0."""
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
    return all_metrics(scores, y, top_k)


# ---------------------------------------------------------------------------- streaming commands

def stream_of(cfg: TrainConfig, paths: Sequence[Path], *, shuffle: bool = False, batch_size: int | None = None,
              distributed: bool = True) -> D.ShardStream:
    """The shards as the stream a model of ``cfg`` reads (``distributed``: shared out among DDP
    ranks, for training and its validation; evaluation and prediction read every shard)."""
    return D.ShardStream(paths, modalities=cfg.modalities, frame_level=cfg.frame_level, max_frames=cfg.max_frames,
                         num_classes=cfg.num_classes, batch_size=batch_size or cfg.batch_size,
                         shuffle=shuffle, buffer=cfg.shuffle_buffer, seed=cfg.seed, distributed=distributed,
                         cache=cfg.shard_cache)


def score_stream(model, classes: np.ndarray, stream: D.ShardStream, num_workers: int = 0
                 ) -> Iterator[tuple[list, np.ndarray, np.ndarray]]:
    """``(ids, probabilities (B, classes of the release), labels bool (B, ...))`` batch by batch."""
    from affectlens.training.engine import loader  # the engine (and Lightning) only when a stream is read

    model.eval()
    with torch.no_grad():
        for batch in loader(stream, stream.batch_size, num_workers=num_workers):
            out = np.zeros((len(batch["ids"]), stream.num_classes), np.float32)
            out[:, classes] = torch.sigmoid(model(batch["x"], batch.get("lengths"))).numpy()
            yield batch["ids"], out, batch["y"].numpy() > 0.5


def train(cfg: TrainConfig, train_paths: Sequence[Path], out_dir: str | Path,
          val_paths: Sequence[Path] | None = None, log: Callable[[str], None] = print, hardware=None,
          resume: bool = True, callbacks: Sequence = (), test_paths: Sequence[Path] | None = None) -> dict:
    """Train on ``train_paths`` (streamed) into the run folder ``out_dir`` (``best.pt`` selected by
    GAP on ``val_paths``, ``last.pt``, ``metrics.json``, ``metrics.csv``; see the training engine),
    then evaluate ``best.pt`` on ``val_paths`` (the split it was selected on, reported as such) and,
    when given, once on ``test_paths``. Returns ``{"val": metrics, "test": metrics, ...}``."""
    out_dir = Path(out_dir)
    torch.set_num_threads(cfg.threads)
    tr = stream_of(cfg, train_paths, shuffle=True)
    va = stream_of(cfg, val_paths, batch_size=1024, distributed=False) if val_paths else None
    classes = np.arange(cfg.num_classes)
    prior = D.label_prior(train_paths, cfg.num_classes, cfg.frame_level)
    seed_everything(cfg.seed)
    model = M.build_model(_model_config(cfg, tr.dim, cfg.num_classes))
    log(f"{tr.videos} training videos in {len(tr.paths)} shards, {cfg.num_classes} classes ({cfg.release}), "
        f"input {tr.dim}-d, {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters")
    res = _fit(model, tr, va, classes, cfg, prior, out_dir, hardware, resume, callbacks)
    if not res.is_global_zero:
        return {}
    # the epochs' own wall time (validation included), summed over every session of a resumed run
    result = {"train_videos": tr.videos, "best_epoch": res.best.get("epoch"), "epochs": res.epochs,
              "train_seconds": float(sum(res.history.get("epoch_seconds", [])))}
    best = load_model(res.best_path)
    for name, paths in (("val", val_paths), ("test", test_paths)):
        if paths:
            result[name] = _evaluate(best, list(paths))
    summary = json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))
    write_json(out_dir / "metrics.json", {**summary, **result})  # the engine's summary + best.pt's scores
    try:
        curves_png({k: v for k, v in res.history.items() if k != "epoch_seconds"}, out_dir / "curves.png")
    except Exception as e:  # a plot must never fail a finished training run
        log(f"(no curve plot: {e})")
    return result


def load_model(checkpoint: str | Path):
    """(model, classes, TrainConfig) from a ``best.pt``/``last.pt`` written by :func:`train`."""
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


def _evaluate(loaded, paths: Sequence[Path], per_class: str | Path | None = None, pr_classes: int = 0) -> dict:
    model, classes, cfg = loaded
    top = TopK(cfg.num_classes, cfg.top_k)
    for _, scores, y in score_stream(model, classes, stream_of(cfg, paths, batch_size=1024, distributed=False)):
        top.add(scores, y)
    metrics = {**top.result(), "videos": top.videos}
    if per_class is not None:
        _write_per_class(per_class, top)
    if pr_classes:
        metrics["pr_curves"] = pr_curves(top, pr_classes)
    return metrics


def pr_curves(top: TopK, n: int = 20, points: int = 200) -> dict:
    """Precision-recall of the ``n`` classes with the most positives: ``{class: {"positives", "ap",
    "precision", "recall"}}``, each curve thinned to at most ``points`` points."""
    ap = top.ap_per_class()
    frequent = [int(c) for c in np.argsort(-top.positives, kind="stable")[:n] if top.positives[c] > 0]
    out = {}
    for c, (p, r) in top.pr_curves(frequent).items():
        keep = np.unique(np.linspace(0, len(p) - 1, min(points, len(p))).round().astype(int)) if len(p) else []
        out[int(c)] = {"positives": int(top.positives[c]), "ap": float(ap[c]),
                       "precision": [round(float(x), 5) for x in p[keep]], "recall": [round(float(x), 5) for x in r[keep]]}
    return out


def _write_per_class(path: str | Path, top: TopK) -> None:
    """``class,positives,ap`` for every class with positives, by AP (the starter code's per-class AP)."""
    ap = top.ap_per_class()
    rows = sorted((i for i in range(len(ap)) if np.isfinite(ap[i])), key=lambda i: -ap[i])
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["class", "positives", "ap"])
            w.writerows([i, int(top.positives[i]), f"{ap[i]:.6f}"] for i in rows)


def evaluate(checkpoint: str | Path, paths: Sequence[Path], per_class: str | Path | None = None,
             pr_classes: int = 0) -> dict:
    """GAP / Hit@1 / PERR / mAP of a trained model on shards (streamed, O(videos x 20) memory);
    ``per_class``: also write each class's AP to that CSV; ``pr_classes``: add the precision-recall
    curves of that many most frequent classes (``pr_curves``)."""
    return _evaluate(load_model(checkpoint), paths, per_class, pr_classes)


def _kaggle_rows(w, ids: Sequence[str], scores: np.ndarray, top_k: int, names: list | None = None) -> None:
    """The starter code's submission rows: ``VideoId``, the top ``top_k`` as "label score ..."
    (best first), and the class names when ``names`` is given."""
    idx, val = top_k_by_video(scores, top_k)  # best first
    for vid, ii, vv in zip(ids, idx, val):
        row = [vid, " ".join(f"{i:d} {v:.6f}" for i, v in zip(ii, vv))]
        if names is not None:
            row.append("; ".join(names[i] or str(i) for i in ii))
        w.writerow(row)


def predict(checkpoint: str | Path, paths: Sequence[Path], out_csv: str | Path, top_k: int = 20,
            vocabulary: str | Path | None = None) -> tuple[Path, int, list[str]]:
    """Score shards (streamed, shard by shard) into the starter code's submission CSV
    (``VideoId,LabelConfidencePairs``: the top ``top_k`` as "label score" pairs); with
    ``vocabulary`` a third column ``Labels`` names them. A shard that cannot be read costs only its
    own videos: returns ``(csv, videos written, failure lines)``; no readable video → ``DataError``."""
    model, classes, cfg = load_model(checkpoint)
    names = D.read_vocabulary(vocabulary, cfg.num_classes) if vocabulary is not None else None
    videos, failed = 0, []
    with atomic_path(out_csv) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["VideoId", "LabelConfidencePairs"] + (["Labels"] if names is not None else []))
            for shard in paths:
                rows: list = []
                try:  # a shard is written only once it was read whole
                    stream = stream_of(cfg, [shard], batch_size=1024, distributed=False)
                    for ids, scores, _ in score_stream(model, classes, stream):
                        rows.append((ids, scores))
                except AffectlensError as e:
                    failed.append(failure_line(shard, e))
                    continue
                for ids, scores in rows:
                    _kaggle_rows(w, ids, scores, top_k, names)
                    videos += len(ids)
        if not videos:
            first = Path(paths[0])
            raise DataError(first.parent if len(paths) > 1 else first, "no readable videos to predict")
    return Path(out_csv), videos, failed


def run_ensemble(checkpoints: Sequence[Path], eval_paths: Sequence[Path], out: str | Path, trees: int = 1000,
                 log: Callable[[str], None] = print, frame_paths: Sequence[Path] | None = None) -> dict:
    """Table 4's ensembling of trained models' scores on the evaluation videos: each model, then
    mean / max pooling and a random forest (2-fold cross-fitted over the evaluation videos).

    Video-level models read ``eval_paths`` and frame-level ones (DBoF, LSTM) ``frame_paths``; their
    scores are joined on the video id, over the videos every model scored."""
    per_model, names, num_classes = [], [], None
    for ckpt in checkpoints:
        model, classes, cfg = load_model(ckpt)
        if num_classes not in (None, cfg.num_classes):
            raise DataError(ckpt, f"predicts {cfg.num_classes} classes, the first model {num_classes}")
        num_classes = cfg.num_classes
        paths = frame_paths if cfg.frame_level else eval_paths
        if not paths:
            raise DataError(ckpt, "is a frame-level model: give the frame-level shards of the same videos")
        rows = {}
        for ids, scores, y in score_stream(model, classes, stream_of(cfg, paths, batch_size=1024, distributed=False)):
            rows.update({v: (s, t) for v, s, t in zip(ids, scores, y)})
        per_model.append(rows)
        names.append(Path(ckpt).parent.name or Path(ckpt).stem)
    common = [v for v in per_model[0] if all(v in rows for rows in per_model[1:])]
    if not common:
        raise DataError(checkpoints[0], "the models share no evaluation video (are the shards of the same videos?)")
    if any(len(rows) != len(common) for rows in per_model):
        log(f"{len(common)} videos scored by every model (of {max(len(r) for r in per_model)})")
    y = np.stack([per_model[0][v][1] for v in common])
    scores = [np.stack([rows[v][0] for v in common]) for rows in per_model]
    res = {}
    for name, s in zip(names, scores):
        res[name] = all_metrics(s, y)
        log(f"{name}: GAP {res[name]['gap']:.4f}")
    res["mean pooling"] = all_metrics(E.mean_ensemble(scores), y)
    res["max pooling"] = all_metrics(E.max_ensemble(scores), y)
    res["random forest"] = all_metrics(E.random_forest_crossfit(scores, y, folds=2, n_estimators=trees, n_jobs=2), y)
    write_json(Path(out) / "ensemble.json", {**res, "videos": len(common)})
    return res


# ---------------------------------------------------------------------------- small shared helpers

def fit_scores(x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, cfg: TrainConfig,
               log: Callable[[str], None] = print, lengths: tuple | None = None,
               min_class_count: int = 1, hardware=None) -> np.ndarray:
    """Train ``cfg.model`` on arrays (on the engine, with ``hardware``) and return eval
    probabilities (N_eval, classes of y_train).

    Only classes with at least ``min_class_count`` training videos are modelled (others score 0)."""
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    classes = np.flatnonzero(y_train.sum(0) >= max(min_class_count, 1))
    lt, le = lengths if lengths is not None else (None, None)
    model = M.build_model(_model_config(cfg, x_train.shape[-1], len(classes)))
    fit(model, Split(list(range(len(x_train))), x_train, y_train, lt), classes, cfg, None, log, hardware=hardware)
    model.eval()
    return predict_scores(model, Split(list(range(len(x_eval))), x_eval, np.zeros((len(x_eval), 0), bool), le),
                          classes, y_train.shape[1])
