"""The one training engine: every room's ``train`` runs through :func:`fit` on Lightning.

A room supplies what is its own as a :class:`TrainModule` (a LightningModule): the net as
``self.model``, its model and train configs (frozen dataclasses), ``training_step`` returning the
loss, ``validation_step``, ``configure_optimizers`` (with any schedule) and the metric to select
on (``monitor``, ``mode``). The engine does the rest, once for every room:

* devices, DDP, nodes and precision (:class:`Hardware`, Lightning's Trainer; ``auto`` picks a GPU
  when there is one), gradient clipping, a progress bar (or one plain line per epoch when stderr
  is not a terminal);
* a run folder: ``last.pt`` after every epoch (resumable: optimizer, schedules, loop state),
  ``best.pt`` when the monitored validation metric improves (never selected on a reported split),
  ``metrics.csv`` (Lightning's CSVLogger, one row per epoch), ``metrics.json`` and, when
  TensorBoard is installed, ``tensorboard/`` (the same rows);
* exact resume: re-running the same command continues after the last finished epoch and ends
  with the same weights as an uninterrupted run (data order and randomness are seeded per epoch,
  :class:`EpochSampler`); a folder made with other settings is refused in one line.

Checkpoints have one payload everywhere (``FORMAT``)::

    {"format": 2, "state_dict": net weights, "model": model config, "train": train config,
     "epoch": epochs done, "best": {"metric", "value", "epoch"}, "history": {name: [per epoch]},
     "extra": room data (e.g. class ids), "optimizer": ..., "lightning": loop state}   # last two: last.pt only

written by rank 0 only, atomically, and read with ``torch.load(weights_only=True)`` through
:func:`affectlens.training.checkpoint.load_checkpoint`. The payload is made by a Lightning
``CheckpointIO`` plugin (:class:`_PayloadIO`), so Lightning's own restore logic resumes from it.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import math
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from affectlens.errors import AffectlensError
from affectlens.files import stale_temps, write_json
from affectlens.training.checkpoint import FORMAT, load_checkpoint, write_payload
from affectlens.training.hardware import Hardware
from affectlens.training.seed import seed_everything

__all__ = ["EpochSampler", "FitResult", "TrainModule", "fit", "loader"]

_PREFIX = "model."  # a TrainModule keeps its net as ``self.model``; the payload holds the net's own keys


def _plain(cfg: Any) -> dict:
    """A config as JSON-able plain values (tuples become lists, as they round-trip through JSON)."""
    if cfg is None:
        return {}
    d = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    return json.loads(json.dumps(d, default=str))


class TrainModule(L.LightningModule):
    """Base of every room's training module.

    Subclasses set ``self.model`` (the ``nn.Module`` saved in checkpoints), pass their model and
    train configs to ``__init__``, return the loss from ``training_step`` and call
    :meth:`record` for every figure they want averaged per epoch over all ranks (``train_loss``,
    ``val_acc``...). ``monitor``/``mode`` name the validation figure that selects ``best.pt``.
    ``resume_may_change``: train-config fields a resumed run may change (e.g. ``epochs``).
    ``extra``: JSON-able room data stored in every checkpoint (e.g. the class ids a head predicts).
    """

    monitor: str = "val_loss"
    mode: str = "min"
    resume_may_change: tuple[str, ...] = ("epochs",)

    def __init__(self, model_config: Any, train_config: Any, *, seed: int = 0, extra: dict | None = None):
        super().__init__()
        seed_everything(int(seed))  # before the subclass builds its net: the initial weights are the seed's
        self.model_config, self.train_config, self.seed = model_config, train_config, int(seed)
        self.extra = dict(extra or {})
        self.history: dict[str, list[float]] = {}
        self.best: dict = {"metric": self.monitor, "value": None, "epoch": 0}
        self._sums: dict[str, torch.Tensor] = {}
        self._t0 = time.perf_counter()

    # ------------------------------------------------------------------ per-epoch figures
    def record(self, name: str, value: torch.Tensor | float, n: int = 1) -> None:
        """Add ``value`` (a mean over ``n`` samples) to this epoch's running mean of ``name``."""
        v = torch.as_tensor(value, dtype=torch.float64, device=self.device).detach()
        pair = torch.stack([v * n, torch.tensor(float(n), dtype=torch.float64, device=self.device)])
        self._sums[name] = self._sums[name] + pair if name in self._sums else pair

    def _flush(self, prefix: str) -> dict[str, float]:
        """Epoch means of the recorded figures starting with ``prefix``, summed over every rank."""
        names = sorted(k for k in self._sums if k.startswith(prefix))
        if not names:
            return {}
        stacked = torch.stack([self._sums.pop(k) for k in names])  # (k, 2)
        if self.trainer.world_size > 1:
            stacked = self.trainer.strategy.reduce(stacked, reduce_op="sum")
        return {k: float(s / max(float(c), 1e-12)) for k, (s, c) in zip(names, stacked.tolist())}

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._val = self._flush("val_")

    def on_train_epoch_start(self) -> None:
        """Seed every epoch from (seed, epoch, rank): a resumed run draws what an uninterrupted one does."""
        self._t0 = time.perf_counter()
        self._val = {}
        seed_everything(self.seed * 1000 + self.current_epoch + 7919 * self.global_rank)

    def finish_epoch(self) -> dict[str, float]:
        """Called by the engine after each training epoch (validation included): the epoch's figures
        go into ``history`` and to the loggers; returns them."""
        row = {**self._flush("train_"), **getattr(self, "_val", {}), "epoch_seconds": time.perf_counter() - self._t0}
        self._val = {}
        for k, v in row.items():
            self.history.setdefault(k, []).append(v)
        for logger in self.trainer.loggers:
            logger.log_metrics({"epoch": self.current_epoch + 1, **row}, step=self.current_epoch)
        return row

    def improved(self, row: dict[str, float]) -> bool:
        """Whether this epoch's ``monitor`` beats the best so far (always True without validation)."""
        value = row.get(self.monitor)
        if self.monitor not in row and self.best["value"] is None:  # no validation: the latest epoch is kept
            self.best = {"metric": None, "value": None, "epoch": self.current_epoch + 1}
            return True
        if value is None or not math.isfinite(value):
            return False
        best = self.best["value"]
        better = best is None or (value > best if self.mode == "max" else value < best)
        if better:
            self.best = {"metric": self.monitor, "value": value, "epoch": self.current_epoch + 1}
        return better

    # ------------------------------------------------------------------ checkpoint payload
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["affectlens"] = {"model": _plain(self.model_config), "train": _plain(self.train_config),
                                    "epoch": self.current_epoch + 1, "best": dict(self.best),
                                    "history": {k: list(v) for k, v in self.history.items()},
                                    "extra": json.loads(json.dumps(self.extra, default=str))}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        ours = checkpoint.get("affectlens", {})
        self.history = {k: list(v) for k, v in ours.get("history", {}).items()}
        self.best = dict(ours.get("best", self.best))


class _PayloadIO(CheckpointIO):
    """Lightning's checkpoint dict <-> affectlens's one payload (see the module docstring)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Any = None) -> None:
        ck = dict(checkpoint)
        ours = ck.pop("affectlens")
        state = ck.pop("state_dict")
        payload = {"format": FORMAT, "state_dict": {k[len(_PREFIX):]: v for k, v in state.items() if k.startswith(_PREFIX)},
                   **{k: ours[k] for k in ("model", "train", "epoch", "best", "history", "extra")}}
        if storage_options != "weights":  # last.pt: everything Lightning needs to go on
            payload["optimizer"] = {"optimizer_states": ck.pop("optimizer_states", []),
                                    "lr_schedulers": ck.pop("lr_schedulers", [])}
            payload["lightning"] = ck
        write_payload(path, payload)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        payload = load_checkpoint(path)
        if "lightning" not in payload:
            raise AffectlensError(f"{path}: holds weights only (no optimizer or loop state), cannot resume from it")
        opt = payload.get("optimizer", {})
        return {**payload["lightning"], "state_dict": {_PREFIX + k: v for k, v in payload["state_dict"].items()},
                "optimizer_states": opt.get("optimizer_states", []), "lr_schedulers": opt.get("lr_schedulers", []),
                "affectlens": {k: payload.get(k) for k in ("model", "train", "epoch", "best", "history", "extra")}}

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)


class _RunFolder(L.Callback):
    """After every training epoch: the figures into history, ``best.pt`` when improved, ``last.pt``."""

    def __init__(self, out: Path, epochs: int, log: bool, patience: int | None = None):
        self.out, self.epochs, self.log, self.patience = out, epochs, log, patience

    def on_train_epoch_start(self, trainer: L.Trainer, module: TrainModule) -> None:
        _set_dataset_epoch([trainer.train_dataloader, trainer.val_dataloaders], trainer.current_epoch)

    def on_train_start(self, trainer: L.Trainer, module: TrainModule) -> None:
        """A resumed run's CSV log starts with the epochs it already has (the logger rewrites the file)."""
        rows = max((len(v) for v in module.history.values()), default=0)
        for logger in trainer.loggers:
            for i in range(rows):
                row = {k: v[i] for k, v in module.history.items() if i < len(v)}
                logger.log_metrics({"epoch": i + 1, **row}, step=i)

    def on_exception(self, trainer: L.Trainer, module: TrainModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt) and trainer.is_global_zero:
            done = len(next(iter(module.history.values()), []))
            print(f"interrupted after epoch {done}: run the same command again to resume from {self.out / 'last.pt'}",
                  file=sys.stderr, flush=True)

    def on_train_epoch_end(self, trainer: L.Trainer, module: TrainModule) -> None:
        row = module.finish_epoch()
        improved = module.improved(row)
        if self.patience and module.best["value"] is not None and \
                module.current_epoch + 1 - module.best["epoch"] >= self.patience:
            trainer.should_stop = True  # early stopping: no better epoch for ``patience`` epochs
        final = module.current_epoch + 1 >= self.epochs or trainer.should_stop
        # without validation "best" is the latest epoch: written once at the end, not every epoch
        if improved and (module.monitor in row or final):
            trainer.save_checkpoint(self.out / "best.pt", weights_only=False, storage_options="weights")
        trainer.save_checkpoint(self.out / "last.pt", weights_only=False)
        if self.log and trainer.is_global_zero:
            figures = " ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch_seconds")
            best = module.best
            mark = f" (best {best['value']:.4f} @ {best['epoch']})" if best["value"] is not None else ""
            print(f"epoch {module.current_epoch + 1}/{self.epochs} {figures}{mark} {row['epoch_seconds']:.1f} s",
                  file=sys.stderr, flush=True)


def _set_dataset_epoch(loaders: Sequence[Any], epoch: int) -> None:
    """A streaming dataset (shards read as they come) shuffles from (seed, epoch) like
    :class:`EpochSampler`, but Lightning sets a sampler's epoch, never a dataset's: the engine does,
    before a run's first iterator is made (which Lightning makes, and prefetches from, before the
    epoch-start hooks) and at the start of every later epoch."""
    for dl in loaders:
        for one in (dl if isinstance(dl, (list, tuple)) else [dl]):
            set_epoch = getattr(getattr(one, "dataset", None), "set_epoch", None)
            if callable(set_epoch):
                set_epoch(epoch)


@dataclass
class FitResult:
    """What :func:`fit` returns on every rank; only ``is_global_zero`` should go on to evaluate."""

    out: Path
    history: dict[str, list[float]] = field(default_factory=dict)
    best: dict = field(default_factory=dict)
    epochs: int = 0
    is_global_zero: bool = True
    world_size: int = 1

    @property
    def best_path(self) -> Path:
        return self.out / "best.pt"

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"


def _refuse_other_settings(last: Path, ck: dict, module: TrainModule) -> None:
    """A run folder continues only the run that made it (``ck``: its ``last.pt``): same model, same
    recipe (but for ``resume_may_change``)."""
    old_model, old_train = ck.get("model", {}), dict(ck.get("train", {}))
    new_model, new_train = _plain(module.model_config), _plain(module.train_config)
    for k in module.resume_may_change:
        old_train.pop(k, None)
        new_train.pop(k, None)
    for what, old, new in (("model", old_model, new_model), ("recipe", old_train, new_train)):
        if old != new:
            key = next((k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)), "?")
            raise AffectlensError(f"{last.parent}: this run folder was made with another {what} ({key}: "
                                  f"{old.get(key)!r} there, {new.get(key)!r} now); use another --out or --no-resume")


def fit(module: TrainModule, train_loader: DataLoader, val_loader: DataLoader | None = None, *,
        out: str | Path, epochs: int, hardware: Hardware | None = None, resume: bool = True,
        grad_clip: float | None = None, progress: bool | None = None, log: bool = True,
        callbacks: Sequence[L.Callback] = (), patience: int | None = None, **trainer_extra: Any) -> FitResult:
    """Train ``module`` for ``epochs`` epochs into the run folder ``out`` (see the module docstring).

    ``resume``: continue from ``out/last.pt`` when it exists (refusing one made with other
    settings); without it an existing ``last.pt`` is replaced. ``progress``: a progress bar
    (default: when stderr is a terminal). ``log``: the start line and one line per epoch on stderr
    (off for the many small fits of a cross-validation). ``patience``: stop when the monitored
    figure has not improved for that many epochs (early stopping; the run folder says so).
    """
    out = Path(out)
    hardware = hardware or Hardware()
    last = out / "last.pt"
    for stale in stale_temps([last, out / "best.pt"], time.time()):  # a killed run's half-written checkpoint
        stale.unlink(missing_ok=True)
    ckpt_path, done = None, {"epoch": 0}
    if resume and last.is_file():
        done = load_checkpoint(last)  # read once: settings check, start epoch, early stop
        _refuse_other_settings(last, done, module)
        ckpt_path = str(last)
        if patience and done["best"].get("value") is not None and done["epoch"] - done["best"]["epoch"] >= patience:
            epochs = done["epoch"]  # it stopped early: the same command again does not train on
    bar = sys.stderr.isatty() if progress is None else progress
    for name in ("lightning.pytorch", "lightning.fabric"):  # their start-up lines; ours says it in one
        logging.getLogger(name).setLevel(logging.WARNING)
    loggers = [L.pytorch.loggers.CSVLogger(str(out), name="", version="")]
    if any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")):  # when installed: out/tensorboard/
        loggers.append(L.pytorch.loggers.TensorBoardLogger(str(out), name="tensorboard", version=""))
    trainer = L.Trainer(max_epochs=epochs, logger=loggers, enable_checkpointing=False,
                        callbacks=[_RunFolder(out, epochs, log=log, patience=patience), *callbacks],
                        plugins=[_PayloadIO()],
                        enable_progress_bar=bar, enable_model_summary=False, num_sanity_val_steps=0,
                        gradient_clip_val=grad_clip, default_root_dir=str(out), log_every_n_steps=1,
                        **hardware.trainer_kwargs(), **trainer_extra)
    if trainer.is_global_zero and log:
        print(f"training on {type(trainer.accelerator).__name__.replace('Accelerator', '').lower()} x "
              f"{trainer.num_devices} device(s) x {trainer.num_nodes} node(s), precision {trainer.precision}, "
              f"into {out}" + (f" (resuming after epoch {done['epoch']})" if ckpt_path else ""),
              file=sys.stderr, flush=True)
    seed_everything(module.seed)
    _set_dataset_epoch([train_loader, val_loader], done["epoch"])
    with warnings.catch_warnings():  # the CSV log of a resumed run is replayed from its history (on_train_start)
        warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
        trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path, weights_only=False)
    result = FitResult(out, {k: list(v) for k, v in module.history.items()}, dict(module.best),
                       len(next(iter(module.history.values()), [])), trainer.is_global_zero, trainer.world_size)
    if trainer.is_global_zero:
        write_json(out / "metrics.json", {"epochs": result.epochs, "best": result.best, "history": result.history,
                                          "world_size": result.world_size})
    return result


class EpochSampler(Sampler[int]):
    """A permutation of ``range(n)`` drawn from (seed, epoch): Lightning calls ``set_epoch`` before
    every epoch, so a resumed run sees the order an uninterrupted one would (a DataLoader's own
    shuffle draws from a generator whose state a restart loses)."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = int(n), int(seed), shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


def loader(dataset: Dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0, num_workers: int = 0,
           **kw: Any) -> DataLoader:
    """The DataLoader every room trains from: an :class:`EpochSampler` (exact resume), workers on request.

    It has its own generator, so making its iterator (which draws the workers' base seed) never
    moves the global random state that dropout and augmentation draw from. A streaming dataset
    (an ``IterableDataset`` that batches and shuffles itself from its epoch, which the engine sets
    before every epoch) is passed through as it is, its workers made anew each epoch."""
    if isinstance(dataset, IterableDataset):
        return DataLoader(dataset, batch_size=None, num_workers=num_workers,
                          generator=torch.Generator().manual_seed(seed), **kw)
    return DataLoader(dataset, batch_size=batch_size, sampler=EpochSampler(len(dataset), seed, shuffle),
                      num_workers=num_workers, persistent_workers=num_workers > 0,
                      generator=torch.Generator().manual_seed(seed), **kw)
