"""Plots every room shares: confusion matrices, training curves, per-class bars, timelines.

Each function writes a PNG (atomically) and returns its path; matplotlib runs headless (Agg).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from affectlens.files import atomic_path  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    from matplotlib.text import Text

    path = Path(path)
    try:
        for text in fig.findobj(Text):  # titles hold file names: a '$' in one is not mathtext
            text.set_parse_math(False)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
    return path


def confusion_matrix_png(cm, class_names: Sequence[str], path, title: str = "Confusion matrix",
                         normalize: bool = False) -> Path:
    """Counts (or row-normalised shares) with the number in every cell; rows are true classes."""
    cm = np.asarray(cm, dtype=np.float64)
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * k, 0.8 + 0.6 * k))
    im = ax.imshow(shown, cmap="Blues")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    hi = shown.max() if shown.size else 1
    for i in range(k):
        for j in range(k):
            text = f"{shown[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if shown[i, j] > hi / 2 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def curves_png(history: Mapping[str, Sequence[float]], path, title: str = "Training curves",
               xlabel: str = "epoch") -> Path:
    """One line per series (e.g. ``{"train_loss": [...], "val_acc": [...]}``)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in history.items():
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", ms=3, label=name)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def pr_curves_png(curves: Mapping[str, tuple], path, title: str = "Precision-recall") -> Path:
    """One precision-recall line per class: ``{name: (precision, recall)}``, in the given order."""
    fig, ax = plt.subplots(figsize=(7, 5))
    cmap = plt.get_cmap("tab20")
    for k, (name, (precision, recall)) in enumerate(curves.items()):
        ax.plot(recall, precision, lw=1.2, color=cmap(k % 20), label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2, loc="lower left")
    return _save(fig, path)


def lines_png(xs: Sequence[float], series: Mapping[str, Sequence[float]], path, xlabel: str, ylabel: str,
              title: str = "") -> Path:
    """One marked line per series over the same ``xs`` (e.g. error against training subjects)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, ys in series.items():
        ax.plot(xs, ys, marker="o", ms=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def per_class_png(report: Mapping, path, title: str = "Per-class metrics") -> Path:
    """Grouped bars of precision / recall / F1 per class from ``classification_report``."""
    names = list(report["per_class"])
    metrics = ("precision", "recall", "f1")
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(names), 3.5))
    for k, m in enumerate(metrics):
        ax.bar(x + (k - 1) * 0.27, [report["per_class"][n][m] for n in names], width=0.27, label=m)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def timeline_png(times: Sequence[float], probabilities, class_names: Sequence[str], path,
                 title: str = "Timeline") -> Path:
    """Stacked class probabilities over time (one column per window centre)."""
    p = np.asarray(probabilities, dtype=np.float64)  # (n_windows, n_classes)
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.stackplot(np.asarray(times), p.T, labels=class_names, alpha=0.85)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def image_grid_png(images: Sequence, path, captions: Sequence[str] | None = None, columns: int = 4,
                   title: str | None = None, cell_inches: float = 2.4) -> Path:
    """Thumbnails (RGB/grey uint8 arrays, ``(H, W[, 3])`` or ``(3, H, W)``) in a row-major grid."""
    imgs = [_hwc(im) for im in images]
    columns = max(1, min(columns, len(imgs)))
    rows = max(1, -(-len(imgs) // columns))
    aspect = max(im.shape[0] / im.shape[1] for im in imgs) if imgs else 1.0
    fig, axes = plt.subplots(rows, columns, squeeze=False,
                             figsize=(cell_inches * columns, cell_inches * aspect * rows + (0.5 if title else 0.2)))
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(imgs):
            ax.imshow(imgs[k], cmap="gray" if imgs[k].ndim == 2 else None, vmin=0, vmax=255)
            if captions is not None and k < len(captions):
                ax.set_title(captions[k], fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def before_after_png(pairs: Sequence, path, title: str = "Before / after", pairs_per_row: int = 2) -> Path:
    """``(before, after, label)`` image pairs side by side, e.g. frames and their anonymized versions."""
    images = [im for before, after, _ in pairs for im in (before, after)]
    captions = [f"{label} — {when}" for _, _, label in pairs for when in ("before", "after")]
    return image_grid_png(images, path, captions, columns=2 * pairs_per_row, title=title)


def _hwc(image) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):  # (C, H, W) → (H, W, C)
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3):
        raise ValueError(f"an image must be (H, W), (H, W, 3) or (3, H, W); got {a.shape}")
    return a
