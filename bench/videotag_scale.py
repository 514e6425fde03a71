"""Video tagging on the real YouTube-8M shards with the starter code's recipe, streamed from disk:
logistic, MoE with 2 / 4 / 8 mixtures, the video-level MLP, and the mean ensemble of the models, on the split of issue
"Videotag at scale" (train: video_level/ 0000-0029 + video_level_more/ 0030-0069, ~20k videos;
choose the epoch and evaluate on 0070-0079, 2,839 videos, said in the docs).

Each model is trained with the same command a user runs (``videotag train --data ... --val ...``,
here through ``recipe.train``), resumes from its run folder, and the table prints GAP, mAP, Hit@1,
PERR, the epoch chosen and the training wall time, with each model's GAP minus the logistic's.

    .venv/bin/python bench/videotag_scale.py [--models logistic moe2 moe4 moe8 mlp] [--out runs/videotag/scale]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
DATA = REPO.parent / "shared" / "data" / "youtube8m"

MODELS = {  # name -> (config file, overrides)
    "logistic": ("configs/videotag_logistic.yaml", {}),
    "moe2": ("configs/videotag_moe.yaml", {}),
    "moe4": ("configs/videotag_moe4.yaml", {}),
    "moe8": ("configs/videotag_moe_a.yaml", {}),
    "mlp": ("configs/videotag_mlp.yaml", {}),
}


def split() -> tuple[list[Path], list[Path]]:
    more = sorted((DATA / "video_level_more").glob("*.tfrecord"))
    train = sorted((DATA / "video_level").glob("*.tfrecord")) + [p for p in more if int(p.stem[-4:]) < 70]
    return train, [p for p in more if int(p.stem[-4:]) >= 70]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "videotag" / "scale")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not (DATA / "video_level_more").is_dir():
        sys.exit(f"skipped: {DATA / 'video_level_more'} not found")

    from affectlens.metrics.multilabel import TopK
    from affectlens.videotag import recipe

    train, val = split()
    print(f"train {len(train)} shards, select/evaluate {len(val)} shards ({val[0].name} .. {val[-1].name})")
    rows, scores = {}, {}
    labels = None
    for name in args.models:
        config, overrides = MODELS[name]
        cfg = recipe.load_config(REPO / config, threads=args.threads, **overrides)
        res = recipe.train(cfg, train, args.out / name, val, log=lambda s: print(f"  {s}"))
        loaded = recipe.load_model(args.out / name / "best.pt")
        parts = list(recipe.score_stream(*loaded[:2], recipe.stream_of(cfg, val, batch_size=1024, distributed=False)))
        scores[name] = np.concatenate([s for _, s, _ in parts])
        labels = np.concatenate([y for _, _, y in parts])
        rows[name] = {**res["val"], "epoch": res["best_epoch"], "seconds": res["train_seconds"]}
        print(f"{name}: GAP {100 * res['val']['gap']:.2f} (epoch {res['best_epoch']}, {res['train_seconds']:.0f} s)",
              flush=True)
    if len(scores) > 1:
        mean = np.mean([scores[n] for n in scores], axis=0)
        rows["mean ensemble"] = {**TopK(mean.shape[1]).add(mean, labels).result(), "epoch": None, "seconds": None}
    base = rows.get("logistic", {}).get("gap")
    print(f"\n| model | GAP | mAP | Hit@1 | PERR | epoch | train wall | GAP - logistic |\n|---|---|---|---|---|---|---|---|")
    for name, m in rows.items():
        delta = f"{100 * (m['gap'] - base):+.2f}" if base is not None else "—"
        wall = f"{m['seconds']:.0f} s" if m["seconds"] is not None else "—"
        print(f"| {name} | {100 * m['gap']:.2f} | {100 * m['map']:.2f} | {100 * m['hit_at_one']:.2f} | "
              f"{100 * m['perr']:.2f} | {m['epoch'] or '—'} | {wall} | {delta} |")


if __name__ == "__main__":
    main()
