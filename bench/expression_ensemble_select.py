"""Which nets to ship together? PublicTest accuracy of every combination of trained expression nets.

Selection only: each checkpoint's class probabilities on FER2013 PublicTest (the split the recipe
selects on; PrivateTest is never read here) are computed once per TTA mode, then every subset of
two or more members is scored by averaging its members' probabilities, exactly as
``ExpressionEnsemble`` does. The best subset is the one to ``affectlens expression ensemble`` and to
report on PrivateTest once with bench/expression_vs_fer.py.

    .venv/bin/python bench/expression_ensemble_select.py \\
        runs/expression/cnn_bilstm/best.pt runs/expression/cnn_bilstm_seed1/best.pt \\
        runs/expression/cnn_bilstm_small/best.pt --tta flip tencrop
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main() -> None:
    from affectlens.expression.data import load_fer
    from affectlens.expression.predict import load_model
    from affectlens.expression.recipe import predict_proba

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="*", type=Path,
                    help="default: every runs/expression/cnn_bilstm*/best.pt")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "fer2013"))
    ap.add_argument("--tta", nargs="+", default=["flip"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--top", type=int, default=12, help="rows to print per TTA mode")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.checkpoints:
        args.checkpoints = sorted((REPO / "runs" / "expression").glob("cnn_bilstm*/best.pt"))
    if len(args.checkpoints) < 2:
        print("fewer than two trained nets under runs/expression/: nothing to choose from "
              "(train them with the commands in docs/expression.md)")
        return
    part = load_fer(args.data).split("PublicTest")
    names = [f"{p.parent.name}/{p.name}" if p.name in ("best.pt", "last.pt") else p.name for p in args.checkpoints]
    for mode in args.tta:
        probs = [predict_proba(load_model(p), part.images, tta=mode) for p in args.checkpoints]
        rows = []
        for k in range(1, len(probs) + 1):
            for subset in itertools.combinations(range(len(probs)), k):
                p = np.mean([probs[i] for i in subset], axis=0)
                rows.append(((p.argmax(1) == part.labels).mean(), subset))
        rows.sort(key=lambda r: -r[0])
        print(f"\nPublicTest ({len(part.labels)} faces), TTA {mode}: accuracy of the mean probability")
        for acc, subset in rows[:args.top]:
            print(f"  {100 * acc:6.2f} %  {' + '.join(names[i] for i in subset)}")
        singles = [r for r in rows if len(r[1]) == 1]
        print("  singles: " + ", ".join(f"{names[s[0]]} {100 * a:.2f} %" for a, s in singles))


if __name__ == "__main__":
    main()
