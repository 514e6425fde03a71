"""Table 1's layout on the synthetic posed/spontaneous set, with the paper's numbers beside ours.

Writes a synthetic USTC-NVIE-style tree + manifest, runs the subject-independent k-fold protocol
(all nine methods, several seeds, never the best seed) from that manifest, and prints in the same
run two reference points: the paper's USTC-NVIE errors and a non-CNN peer on the same folds
(logistic regression on the raw apex − onset pixel difference, the "pixel difference" input the
paper argues against), plus the chance bound (majority class of the training fold).

    .venv/bin/python bench/spontaneity_synthetic.py --subjects 24 --per-subject 8 --folds 10 --seeds 2
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def pixel_peer(onset, apex, labels, subjects, folds):
    """Error % (mean over folds) of logistic regression on the pixel difference, and of chance."""
    from sklearn.linear_model import LogisticRegression

    from affectlens.spontaneity.protocol import subject_folds

    diff = (apex.astype(np.float32) - onset).reshape(len(labels), -1) / 128.0
    peer, chance = [], []
    for tr, te in subject_folds(subjects, "kfold", folds):
        model = LogisticRegression(C=0.1, max_iter=3000).fit(diff[tr], labels[tr])
        peer.append(np.mean(model.predict(diff[te]) != labels[te]))
        majority = int(np.mean(labels[tr]) >= 0.5)
        chance.append(np.mean(labels[te] != majority))
    return 100 * float(np.mean(peer)), 100 * float(np.mean(chance))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=24)
    p.add_argument("--per-subject", type=int, default=8)
    p.add_argument("--difficulty", type=float, default=0.3)
    p.add_argument("--folds", type=int, default=10)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--size", default="tiny")
    p.add_argument("--out", type=Path, default=None, help="keep results.json / errors.png here")
    args = p.parse_args(argv)

    from rich.console import Console

    from affectlens.spontaneity.protocol import METHODS, PAPER_TABLE1, TrainConfig, print_table
    from affectlens.spontaneity.recipe import cross_validate, load_dataset
    from affectlens.spontaneity.synth import write_synthetic

    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_synthetic(Path(tmp) / "synthetic", args.subjects, args.per_subject, 0, args.difficulty)
        t0 = time.time()
        tc = TrainConfig(size=args.size, epochs=args.epochs)
        result = cross_validate(manifest, args.out, "kfold", args.folds, list(range(args.seeds)), tc)
        minutes = (time.time() - t0) / 60
        onset, apex, labels, subjects = load_dataset(manifest)
    print_table(result, console, title=f"Synthetic set ({args.subjects} subjects × {args.per_subject} pairs, "
                                       f"difficulty {args.difficulty}): error rate %, {args.folds} folds × "
                                       f"{args.seeds} seeds, {args.size} nets, {args.epochs} epochs")
    peer, chance = pixel_peer(onset, apex, labels, subjects, args.folds)
    console.print(f"peer: logistic regression on the pixel difference image = {peer:.2f} %; chance = {chance:.2f} %")
    for m in METHODS:
        per_seed = [100 * float(np.mean(e)) for e in result["errors"][m]]
        med = statistics.median(per_seed)
        console.print(f"{m:18s} median over seeds {med:6.2f} %  ratio to pixel-difference peer "
                      f"{med / max(peer, 1e-9):.2f}  ratio to paper subset {med / PAPER_TABLE1[m][0]:.1f}×")
    console.print(f"CV wall time {minutes:.1f} min")


if __name__ == "__main__":
    main()
