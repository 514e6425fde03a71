"""Multi-label video metrics exactly as the YouTube-8M starter code defines them, vectorised.

All functions take ``predictions`` (videos, classes) float scores and ``labels`` (videos, classes)
0/1 (bool or int). Definitions (``eval_util.py`` / ``average_precision_calculator.py``):

* **GAP** — each video's ``top_k`` scores are pooled over all videos and sorted once; average
  precision is taken with *all* positives in ``labels`` as the denominator (a positive that is not
  in its video's top ``k`` can never be recalled).
* **mAP** — per class, the average precision of that class's (video, class) pairs among the
  videos' top ``k``, again over all positives of the class; averaged over classes with at least one
  positive (a class with positives but no top-``k`` prediction counts 0).
* **Hit@1** — share of videos whose highest score is a true label.
* **PERR** — for a video with ``j`` labels, the precision of its top ``j`` scores, counting only
  scores ``> 0``; a video without labels counts 0; averaged over videos.

Exact ties are broken by position here (the starter code shuffles them with a seeded RNG), so
results can differ only when scores tie exactly.
"""
from __future__ import annotations

import numpy as np

from affectlens.errors import ShapeError

__all__ = ["top_k_by_video", "gap", "mean_average_precision", "average_precision_per_class",
           "hit_at_one", "perr", "all_metrics"]

_CHUNK = 8192  # rows per argpartition call: bounds the temporary memory on 100k × 3862 inputs


def _check(predictions, labels) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(predictions)
    y = np.asarray(labels)
    if p.ndim != 2 or p.shape != y.shape:
        raise ShapeError(f"predictions {p.shape} and labels {y.shape} must both be (videos, classes)")
    return p, y


def top_k_by_video(predictions, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Indices (N, k) and scores (N, k) of each row's ``k`` highest scores (best first).

    Uses ``torch.topk`` (zero-copy on the numpy buffer, several times faster than
    ``np.argpartition`` on 100k × 3862) when torch is importable, numpy otherwise.
    """
    p = np.asarray(predictions)
    if k <= 0:
        raise ValueError("k must be a positive integer")
    k = min(k, p.shape[1])
    try:
        import torch
    except ImportError:  # metrics stay usable without torch
        torch = None
    if torch is not None and p.dtype in (np.float32, np.float64) and p.size:
        t = torch.from_numpy(np.ascontiguousarray(p))
        vals, idx = torch.topk(t, k, dim=1, largest=True, sorted=True)
        return idx.numpy().astype(np.int64, copy=False), vals.numpy()
    idx = np.empty((p.shape[0], k), dtype=np.int64)
    for s in range(0, p.shape[0], _CHUNK):
        block = p[s:s + _CHUNK]
        part = np.argpartition(block, block.shape[1] - k, axis=1)[:, -k:] if k < p.shape[1] \
            else np.broadcast_to(np.arange(k), block.shape)
        order = np.argsort(-np.take_along_axis(block, part, axis=1), axis=1, kind="stable")
        idx[s:s + _CHUNK] = np.take_along_axis(part, order, axis=1)
    return idx, np.take_along_axis(p, idx, axis=1)


def _sparse_top_k(p: np.ndarray, y: np.ndarray, k: int):
    idx, scores = top_k_by_video(p, k)
    hits = np.take_along_axis(y, idx, axis=1) > 0
    return idx.ravel(), scores.ravel(), hits.ravel()


def _positives(y: np.ndarray, axis=None):
    if y.dtype == bool and axis is not None:  # summing the bytes beats count_nonzero(axis=…)
        return y.view(np.uint8).sum(axis=axis, dtype=np.int64)
    return np.count_nonzero(y if y.dtype == bool else y > 0, axis=axis)


def gap(predictions, labels, top_k: int = 20) -> float:
    """Global Average Precision over each video's top ``top_k`` scores (starter ``calculate_gap``)."""
    p, y = _check(predictions, labels)
    _, scores, hits = _sparse_top_k(p, y, top_k)
    num_pos = int(_positives(y))
    if num_pos == 0 or scores.size == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    ranked = hits[order]
    ranks = np.flatnonzero(ranked) + 1.0  # 1-based ranks of the hits
    return float(np.sum(np.arange(1, ranks.size + 1) / ranks) / num_pos)


def average_precision_per_class(predictions, labels, top_k: int = 20) -> np.ndarray:
    """Per-class AP over the videos' top ``top_k`` pairs (starter ``MeanAveragePrecisionCalculator``).

    Returns float64 (classes,); classes without positives get NaN.
    """
    p, y = _check(predictions, labels)
    num_classes = p.shape[1]
    cls, scores, hits = _sparse_top_k(p, y, top_k)
    by_score = np.argsort(-scores, kind="stable")
    order = by_score[np.argsort(cls[by_score], kind="stable")]  # by class, then score descending
    cls, hits = cls[order], hits[order]
    starts = np.searchsorted(cls, np.arange(num_classes))
    rank = np.arange(cls.size) - starts[cls] + 1.0
    cum = np.cumsum(hits)
    before = np.concatenate([[0], cum])[starts]  # hits of earlier classes
    within = cum - before[cls]
    contrib = np.where(hits, within / rank, 0.0)
    num_pos = _positives(y, axis=0)
    ap = np.bincount(cls, weights=contrib, minlength=num_classes) / np.maximum(num_pos, 1)
    return np.where(num_pos > 0, ap, np.nan)


def mean_average_precision(predictions, labels, top_k: int = 20) -> float:
    """Mean over classes with positives of the per-class top-``k`` AP."""
    ap = average_precision_per_class(predictions, labels, top_k)
    valid = ~np.isnan(ap)
    return float(ap[valid].mean()) if valid.any() else 0.0


def hit_at_one(predictions, labels) -> float:
    """Share of videos whose top-scoring class is a true label (starter ``calculate_hit_at_one``)."""
    p, y = _check(predictions, labels)
    if p.shape[0] == 0:
        return 0.0
    top = np.argmax(p, axis=1)
    return float(np.mean(y[np.arange(p.shape[0]), top] > 0))


def perr(predictions, labels) -> float:
    """Precision at equal recall rate (starter ``calculate_precision_at_equal_recall_rate``)."""
    p, y = _check(predictions, labels)
    n, c = p.shape
    if n == 0:
        return 0.0
    j = _positives(y, axis=1)
    kmax = int(j.max())
    if kmax == 0:
        return 0.0
    idx, scores = top_k_by_video(p, kmax)  # (N, kmax) best first
    good = (np.take_along_axis(y, idx, axis=1) > 0) & (scores > 0)
    within = np.arange(idx.shape[1])[None, :] < j[:, None]
    hits = np.count_nonzero(good & within, axis=1)
    return float(np.sum(np.where(j > 0, hits / np.maximum(j, 1), 0.0)) / n)


def all_metrics(predictions, labels, top_k: int = 20) -> dict:
    """``{"gap", "hit_at_one", "perr", "map"}`` as plain floats."""
    return {"gap": gap(predictions, labels, top_k), "hit_at_one": hit_at_one(predictions, labels),
            "perr": perr(predictions, labels), "map": mean_average_precision(predictions, labels, top_k)}
