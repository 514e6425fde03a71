"""What the one training engine costs: per-epoch wall time through ``affectlens.training.engine.fit``
against a bare PyTorch loop doing the same work (same data, model, augmentation, loss, optimiser,
gradient clipping), for the expression recipe and for videotag's MoE. Bound: 1.1x.

    .venv/bin/python bench/engine_overhead.py                 # 3 interleaved runs of each
    .venv/bin/python bench/engine_overhead.py --runs 5 --faces 4096

Expression reads FER2013 Training from ../shared/data when present (else random faces of the same
shape); videotag reads the real YouTube-8M shards 0000-0023 when present (else synthetic shards).
Each run trains one epoch from the same seed; the engine's figure includes its checkpoints and logs.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def _faces(n: int) -> tuple[np.ndarray, np.ndarray]:
    from affectlens.expression.data import load_fer

    root = SHARED / "fer2013"
    if root.exists():
        tr = load_fer(root).split("Training")
        return tr.images[:n], tr.labels[:n]
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), rng.integers(0, 7, n).astype(np.int64)


def expression_bare(images, labels, cfg) -> float:
    from affectlens.expression import model as M
    from affectlens.expression.recipe import augment, lr_at
    from affectlens.training.seed import seed_everything

    seed_everything(cfg.seed)
    mcfg = cfg.model_config()
    model = M.build_model(mcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    x_all, y_all = torch.from_numpy(images)[:, None], torch.from_numpy(labels)
    spe = math.ceil(len(y_all) / cfg.batch_size)
    gen = torch.Generator().manual_seed(cfg.seed * 1000)
    t0 = time.perf_counter()
    model.train()
    order = torch.randperm(len(y_all), generator=torch.Generator().manual_seed(cfg.seed * 1000))
    for i in range(spe):
        idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        for g in opt.param_groups:
            g["lr"] = lr_at(i, cfg.epochs * spe, spe, cfg)
        loss = F.cross_entropy(model(augment(x_all[idx], cfg, mcfg, gen)), y_all[idx], label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
    return time.perf_counter() - t0


def expression_engine(images, labels, cfg) -> float:
    from dataclasses import replace

    from affectlens.expression.data import FerSet
    from affectlens.expression.recipe import train

    n = len(labels)
    usage = np.array(["Training"] * n + ["PublicTest"])  # one PublicTest face: selection costs ~nothing
    fer = FerSet(np.concatenate([images, images[:1]]), np.concatenate([labels, labels[:1]]), usage,
                 np.array([str(i) for i in range(n + 1)]))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()  # the whole call: model, Trainer, epoch, checkpoints, logs
        train(replace(cfg, out=tmp), fer=fer, progress=False, callbacks=[_StopAfterOne()])
        return time.perf_counter() - t0


class _StopAfterOne(L.Callback):
    """Ends the run after its first epoch (the schedule is the 30-epoch recipe's, as in the bare loop)."""

    def on_train_epoch_end(self, trainer, module):
        trainer.should_stop = True


def _videotag_split():
    from affectlens.videotag import recipe
    from affectlens.videotag.data import shard_paths

    root = SHARED / "youtube8m" / "video_level"
    if root.exists():
        paths = shard_paths(root)[:24]
    else:
        from affectlens.videotag.synth import synth_video_level

        paths = synth_video_level(Path(tempfile.mkdtemp()) / "shards", num_shards=4, videos_per_shard=1500,
                                  num_classes=400)
    return recipe.load_split(paths, ("rgb", "audio"))


def videotag_bare(split, classes, cfg) -> float:
    from affectlens.training.seed import seed_everything
    from affectlens.videotag import models as M
    from affectlens.videotag import recipe

    seed_everything(cfg.seed)
    model = M.build_model(recipe._model_config(cfg, split.x.shape[-1], len(classes)))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    y = split.y[:, classes]
    M.init_prior(model, torch.from_numpy(y.mean(0).astype(np.float32)))
    t0 = time.perf_counter()
    model.train()
    for idx in recipe._batches(len(split.ids), cfg.batch_size, np.random.default_rng(cfg.seed)):
        idx = np.sort(idx)
        logits = model(torch.from_numpy(split.x[idx]), None)
        target = torch.from_numpy(y[idx].astype(np.float32))
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / len(idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def videotag_engine(split, classes, cfg) -> float:
    from affectlens.training.seed import seed_everything
    from affectlens.videotag import models as M
    from affectlens.videotag import recipe

    seed_everything(cfg.seed)
    model = M.build_model(recipe._model_config(cfg, split.x.shape[-1], len(classes)))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        recipe.fit(model, split, classes, cfg, Path(tmp), log=lambda s: None)
        return time.perf_counter() - t0


def _pairs(name: str, bare, engine, runs: int) -> float:
    b, e = [], []
    for _ in range(runs):  # interleaved, so both see the same drift of a shared machine
        b.append(bare())
        e.append(engine())
    ratio = statistics.median(e) / statistics.median(b)
    paired = statistics.median(x / y for x, y in zip(e, b))
    print(f"{name:28s} bare loop {statistics.median(b):7.2f} s  engine {statistics.median(e):7.2f} s  "
          f"ratio {ratio:.3f}x (paired {paired:.3f}x, bound 1.10x) {'ok' if ratio <= 1.10 else 'OVER'}")
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--faces", type=int, default=2048, help="Training faces per expression epoch.")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from affectlens.expression.recipe import TrainConfig
    from affectlens.videotag.recipe import TrainConfig as VTConfig

    images, labels = _faces(args.faces)
    ecfg = TrainConfig(size="compact", epochs=30, threads=args.threads)
    print(f"expression: {len(labels)} faces, compact CNN-BiLSTM, batch {ecfg.batch_size}; "
          f"videotag: MoE on {'real' if (SHARED / 'youtube8m').exists() else 'synthetic'} shards")
    ratios = [_pairs("expression epoch", lambda: expression_bare(images, labels, ecfg),
                     lambda: expression_engine(images, labels, ecfg), args.runs)]
    split = _videotag_split()
    classes = np.flatnonzero(split.y.any(0))
    vcfg = VTConfig(model={"kind": "moe", "num_experts": 2}, epochs=1, batch_size=256, lr=0.01, threads=args.threads)
    ratios.append(_pairs(f"videotag MoE epoch ({len(split.ids)} v)", lambda: videotag_bare(split, classes, vcfg),
                         lambda: videotag_engine(split, classes, vcfg), args.runs))
    sys.exit(0 if max(ratios) <= 1.10 else 1)


if __name__ == "__main__":
    main()
