"""A small epoch loop shared by the attribute classifier and the reconstruction net.

Every epoch ends with an atomic checkpoint (``last.pt``: weights, optimizer, epoch, history) and,
when validation improves, ``best.pt``. Re-running the same command resumes from ``last.pt``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch


@dataclass
class FitState:
    epoch: int = 0
    best: float = -math.inf
    history: dict = field(default_factory=dict)


def _restore(out: Path, model, opt) -> FitState:
    from affectlens.training import load_checkpoint

    last = out / "last.pt"
    if not last.is_file():
        return FitState()
    ck = load_checkpoint(last)
    model.load_state_dict(ck["state_dict"])
    opt.load_state_dict(ck["optimizer"])
    return FitState(int(ck["epoch"]), float(ck["best"]), dict(ck["history"]))


def fit(model, opt, train_batches: Callable[[int], Iterable], step: Callable, evaluate: Callable[[], dict],
        *, epochs: int, out: str | Path, config, monitor: str, steps_per_epoch: int, log=print) -> FitState:
    """Train ``epochs`` epochs (resuming from ``out/last.pt``); returns the final state.

    ``train_batches(epoch)`` yields batches, ``step(batch) -> float loss`` does one update,
    ``evaluate() -> dict`` scores the validation split (``monitor`` is maximised).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from affectlens.training import save_checkpoint

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = _restore(out, model, opt)
    if state.epoch:
        log(f"resuming from {out / 'last.pt'} after epoch {state.epoch}")
    cols = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            TextColumn("loss {task.fields[loss]:.4f}")]
    for epoch in range(state.epoch, epochs):
        model.train()
        total, n = 0.0, 0
        with Progress(*cols, transient=False) as bar:
            task = bar.add_task(f"epoch {epoch + 1}/{epochs}", total=steps_per_epoch, loss=float("nan"))
            for batch in train_batches(epoch):
                total += step(batch)
                n += 1
                bar.update(task, advance=1, loss=total / n)
                if not bar.console.is_terminal and n % max(1, steps_per_epoch // 10) == 0:
                    log(f"epoch {epoch + 1} step {n}/{steps_per_epoch} loss {total / n:.4f}")  # logs to a file
        model.eval()
        with torch.no_grad():
            scores = evaluate()
        scores = {"train_loss": total / max(n, 1), **scores}
        for k, v in scores.items():
            state.history.setdefault(k, []).append(float(v))
        state.epoch = epoch + 1
        improved = scores[monitor] > state.best
        state.best = max(state.best, scores[monitor])
        extra = dict(optimizer=opt.state_dict(), epoch=state.epoch, best=state.best, history=state.history)
        save_checkpoint(out / "last.pt", model, config, **extra)
        if improved:
            save_checkpoint(out / "best.pt", model, config, **extra)
        log(f"epoch {state.epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    return state


def batches(indices, batch_size: int, epoch: int, seed: int, shuffle: bool = True):
    """Index batches for one epoch (a fresh permutation per epoch, repeatable under resume)."""
    import numpy as np

    idx = np.asarray(indices)
    if shuffle:
        idx = idx[np.random.default_rng(seed * 1000 + epoch).permutation(len(idx))]
    for s in range(0, len(idx), batch_size):
        yield idx[s:s + batch_size]
