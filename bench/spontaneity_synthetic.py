"""Table 1's layout on the synthetic posed/spontaneous set, with the paper's numbers beside ours.

Writes a synthetic USTC-NVIE-style tree + manifest, runs the subject-independent k-fold protocol
(all nine methods, several seeds, never the best seed) from that manifest, and prints in the same
run the reference points: the paper's USTC-NVIE errors, a non-CNN peer on the same folds (logistic
regression on the raw apex − onset pixel difference, the input the paper argues against) and the
chance bound (majority class of the training fold).

    .venv/bin/python bench/spontaneity_synthetic.py --subjects 20 --folds 10 --seeds 2 --out bench-out

On a crowded machine the seeds can run as separate processes and be merged:

    .venv/bin/python bench/spontaneity_synthetic.py --seeds 1 --first-seed 0 --out s0 &
    .venv/bin/python bench/spontaneity_synthetic.py --seeds 1 --first-seed 1 --out s1 &
    wait; .venv/bin/python bench/spontaneity_synthetic.py --merge s0 s1
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def pixel_peer(onset, apex, labels, subjects, folds):
    """Error % (mean over folds) of logistic regression on the pixel difference, and of chance."""
    from sklearn.linear_model import LogisticRegression

    from affectlens.spontaneity.recipe import subject_folds

    diff = (apex.astype(np.float32) - onset).reshape(len(labels), -1) / 128.0
    peer, chance = [], []
    for tr, te in subject_folds(subjects, "kfold", folds):
        model = LogisticRegression(C=0.1, max_iter=3000).fit(diff[tr], labels[tr])
        peer.append(np.mean(model.predict(diff[te]) != labels[te]))
        majority = int(np.mean(labels[tr]) >= 0.5)
        chance.append(np.mean(labels[te] != majority))
    return 100 * float(np.mean(peer)), 100 * float(np.mean(chance))


def merge(dirs) -> dict:
    """Concatenate the seeds of several results.json files run on the same set and folds."""
    from affectlens.spontaneity.recipe import METHODS, summarise

    parts = [json.loads((Path(d) / "results.json").read_text()) for d in dirs]
    out = dict(parts[0])
    out["seeds"] = [s for p in parts for s in p["seeds"]]
    out["errors"] = {m: [row for p in parts for row in p["errors"][m]] for m in METHODS}
    n = out["samples"] * len(out["seeds"])
    out["summary"] = {m: summarise(np.array(out["errors"][m]),
                                   sum(p["summary"][m]["pooled"] / 100 * p["samples"] * len(p["seeds"])
                                       for p in parts) / n) for m in METHODS}
    return out


def report(result: dict, args, onset, apex, labels, subjects, minutes: float) -> None:
    from rich.console import Console

    from affectlens.spontaneity.recipe import METHODS, PAPER_TABLE1, print_table

    console = Console(width=120)
    tc = result["train"]
    print_table(result, console, title=f"Synthetic set ({result['subjects']} subjects, {result['samples']} pairs, "
                                       f"difficulty {args.difficulty}): error rate %, {result['folds']} folds × "
                                       f"{len(result['seeds'])} seeds, {tc['size']} nets, {tc['epochs']} epochs")
    peer, chance = pixel_peer(onset, apex, labels, subjects, result["folds"])
    console.print(f"peer: logistic regression on the pixel difference image = {peer:.2f} %; chance = {chance:.2f} %")
    for m in METHODS:
        per_seed = [100 * float(np.mean(e)) for e in result["errors"][m]]
        med = statistics.median(per_seed)
        console.print(f"{m:18s} median over seeds {med:6.2f} %   ratio to pixel-difference peer "
                      f"{med / max(peer, 1e-9):.2f}   ratio to paper (subset) {med / PAPER_TABLE1[m][0]:.1f}×")
    if minutes:
        console.print(f"CV wall time {minutes:.1f} min")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=20)
    p.add_argument("--per-subject", type=int, default=8)
    p.add_argument("--difficulty", type=float, default=0.3)
    p.add_argument("--folds", type=int, default=10)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--size", default="tiny")
    p.add_argument("--out", type=Path, default=None, help="keep results.json / errors.png here")
    p.add_argument("--merge", type=Path, nargs="+", default=None, help="print the table of merged --out folders")
    args = p.parse_args(argv)

    from affectlens.spontaneity.recipe import TrainConfig
    from affectlens.spontaneity.recipe import cross_validate, load_dataset
    from affectlens.spontaneity.synth import write_synthetic

    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_synthetic(Path(tmp) / "synthetic", args.subjects, args.per_subject, 0, args.difficulty)
        onset, apex, labels, subjects = load_dataset(manifest)
        if args.merge:
            report(merge(args.merge), args, onset, apex, labels, subjects, 0.0)
            return
        t0 = time.time()
        tc = TrainConfig(size=args.size, epochs=args.epochs)

        def log(seed, fold, errs):
            print(f"seed {seed} fold {fold}: " + " ".join(f"{m}={100 * e:.0f}" for m, e in errs.items()), flush=True)

        seeds = list(range(args.first_seed, args.first_seed + args.seeds))
        result = cross_validate(manifest, args.out, "kfold", args.folds, seeds, tc, progress=False, on_fold=log)
    report(result, args, onset, apex, labels, subjects, (time.time() - t0) / 60)


if __name__ == "__main__":
    main()
