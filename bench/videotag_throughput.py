"""Training throughput (videos/s) of videotag on the engine, streaming its shards from disk, against
a bare PyTorch loop over the same videos already in memory as tensors (same model, batch 1024,
Adam, loss). Bound: the bare loop is at most 1.2x faster. Logistic and the 2-mixture MoE.

The engine runs twice: parsing every record each epoch (the default), and through the
decoded-shard cache (``--shard-cache``, ``data.decoded_shard``; here in a temporary folder, written
in the first epoch, read in the second). Each run trains two epochs from the same seed and keeps
the second epoch's time (the first pays for start-up and fills the cache); runs are interleaved so
all sides see the same drift of a shared machine. The bound is checked on the faster engine path.

    .venv/bin/python bench/videotag_throughput.py [--shards 24] [--runs 3] [--threads 2] [--num-workers 0]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
SHARDS = REPO.parent / "shared" / "data" / "youtube8m" / "video_level"


def bare(x: torch.Tensor, y: torch.Tensor, cfg, prior: np.ndarray) -> float:
    """The second epoch's seconds of a plain loop over in-memory tensors."""
    from affectlens.training.seed import seed_everything
    from affectlens.videotag import models as M
    from affectlens.videotag import recipe

    seed_everything(cfg.seed)
    model = M.build_model(recipe._model_config(cfg, x.shape[1], y.shape[1]))
    M.init_prior(model, torch.from_numpy(prior))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train()
    for _ in range(2):
        t0 = time.perf_counter()
        for idx in torch.randperm(len(x)).split(cfg.batch_size):
            loss = F.binary_cross_entropy_with_logits(model(x[idx]), y[idx], reduction="sum") / len(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds = time.perf_counter() - t0
    return seconds


def engine(paths: list[Path], cfg) -> float:
    """The second epoch's seconds of ``recipe.train`` streaming the shards (its own epoch clock)."""
    from affectlens.videotag import recipe

    with tempfile.TemporaryDirectory() as tmp:
        recipe.train(cfg, paths, Path(tmp) / "run", None, log=lambda s: None)
        history = json.loads((Path(tmp) / "run" / "metrics.json").read_text())["history"]
    return history["epoch_seconds"][-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=24)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--num-workers", type=int, default=1, help="Stream readers (DataLoader workers) of the engine.")
    args = ap.parse_args()
    if not SHARDS.is_dir():
        sys.exit(f"skipped: {SHARDS} not found")
    from affectlens.videotag import data as D
    from affectlens.videotag import recipe

    torch.set_num_threads(args.threads)
    paths = D.shard_paths(SHARDS)[:args.shards]
    everything = D.read_video_level(paths)
    x = torch.from_numpy(everything.features())
    y = torch.from_numpy(everything.targets().astype(np.float32))
    prior = D.label_prior(paths)
    n = len(x)
    print(f"{n} videos from {len(paths)} shards; batch 1024; {args.threads} threads, {args.num_workers} reader(s); "
          f"second epoch of two, "
          f"median of {args.runs} interleaved runs")
    worst = 0.0
    with tempfile.TemporaryDirectory() as cache:
        os.environ["AFFECTLENS_CACHE"] = cache  # the decoded shards of this bench only
        for name, model in (("logistic", {"kind": "logistic"}), ("MoE 2 mixtures", {"kind": "moe", "num_experts": 2})):
            cfg = recipe.TrainConfig(model=model, epochs=2, threads=args.threads, num_workers=args.num_workers)
            cached = dataclasses.replace(cfg, shard_cache=True)
            b, e, c = [], [], []
            for _ in range(args.runs):
                b.append(bare(x, y, cfg, prior))
                e.append(engine(paths, cfg))
                c.append(engine(paths, cached))
            vb, ve, vc = (n / statistics.median(t) for t in (b, e, c))
            ratio = vb / max(ve, vc)
            worst = max(worst, ratio)
            print(f"{name:16s} bare loop {vb:7.0f} videos/s   engine, parsing {ve:7.0f} ({vb / ve:.3f}x)   "
                  f"engine, decoded-shard cache {vc:7.0f} ({vb / vc:.3f}x)   bound 1.20x: "
                  f"{'ok' if ratio <= 1.2 else 'OVER'}", flush=True)
    sys.exit(0 if worst <= 1.2 else 1)


if __name__ == "__main__":
    main()
