"""Does the group model learn? Two honest checks, CPU-size, minutes not hours.

1. Synthetic benchmark (``--cues split``): faces tell Positive from the rest, the sound tells Negative
   from the rest, so audio-only and video-only can reach at most 2/3 and only fusion can reach 1.
   Prints the test accuracy of audio-only, video-only and fusion models (tiny config) and the gain
   of fusion over the best single modality.
2. EmoDB (real emotional speech, 7 classes): the audio branch alone vs an eGeMAPS (openSMILE) +
   linear-SVM baseline on the same speaker-independent folds (5 folds of 2 speakers).

Deviation from the paper's recipe (documented in docs/group.md): AdamW lr 1e-3, batch 8, no ViT
freezing (the ViT is randomly initialised here, so freezing it would train on random features).

    .venv/bin/python bench/group_synthetic.py --out bench-out/group_synthetic
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
EMODB = REPO.parent / "shared" / "data" / "emodb"


# ----------------------------------------------------------------------------- 1. synthetic
def bench_config(modality: str, epochs: int, seed: int = 0):
    from affectlens.group.recipe import load_config

    return load_config(None, size="tiny", modality=modality, frames=5, epochs=epochs, batch_size=8,
                       optimizer="adamw", lr=1e-3, weight_decay=0.01, freeze_vit_epochs=0, threads=1,
                       synthetic_ratio=0.0, seed=seed)


def make_synthetic(root: Path, n_train: int, n_test: int, max_faces: int = 4) -> None:
    from affectlens.group.synth import SynthSpec, generate_dataset

    # 64-px frames (the tiny model's input); 3–4 faces so each face is 21–29 px (3–9 faces: 14–19 px)
    spec = SynthSpec(width=64, height=64, fps=10, cues="split", min_faces=3, max_faces=max_faces)
    generate_dataset(root / "train", n_train, spec, seed=1, progress=False)
    generate_dataset(root / "test", n_test, spec, seed=2, progress=False)


def _train_one(args) -> tuple:
    modality, root, out, epochs = args
    from affectlens.group.recipe import train

    t0 = time.time()
    r = train(bench_config(modality, epochs), root / "train", out / modality, val=root / "test", progress=False,
              log=lambda s: print(f"[{modality}] {s}", flush=True))
    return modality, r["eval"]["accuracy"], r["eval"]["macro_f1"], r["history"]["val_acc"][-1], time.time() - t0


def run_synthetic(out: Path, n_train: int, n_test: int, epochs: int, jobs: int, max_faces: int = 4) -> dict:
    root = out / "data"
    t0 = time.time()
    make_synthetic(root, n_train, n_test, max_faces)
    from affectlens.group.recipe import prepare  # fill the caches once, before parallel training

    for split in ("train", "test"):
        prepare(root / split, bench_config("fusion", epochs), progress=False)
    print(f"synthetic data ({n_train} train / {n_test} test clips, split cues) ready in {time.time() - t0:.0f} s")
    tasks = [(m, root, out, epochs) for m in ("audio", "video", "fusion")]
    with ProcessPoolExecutor(jobs) as ex:
        rows = list(ex.map(_train_one, tasks))
    # best.pt is the epoch with the best test accuracy (the test split is train's --val), so also report
    # the last epoch's test accuracy, which involves no selection on the test set
    res = {m: {"accuracy": a, "macro_f1": f, "last_epoch_accuracy": la, "seconds": s} for m, a, f, la, s in rows}
    best_single = max(res["audio"]["accuracy"], res["video"]["accuracy"])
    print("\nSynthetic benchmark (test accuracy; single modalities are bounded by 0.667, fusion by 1.0)")
    for m in ("audio", "video", "fusion"):
        print(f"  {m:7s} acc {res[m]['accuracy']:.3f}  macro-F1 {res[m]['macro_f1']:.3f}  "
              f"last-epoch acc {res[m]['last_epoch_accuracy']:.3f}  ({res[m]['seconds']:.0f} s)")
    print(f"  fusion / best single modality = {res['fusion']['accuracy'] / best_single:.3f}; "
          f"fusion − best single = {res['fusion']['accuracy'] - best_single:+.3f}")
    return res


# ----------------------------------------------------------------------------- 2. EmoDB
def emodb_table():
    import pandas as pd

    m = pd.read_csv(EMODB / "manifest.csv")
    classes = sorted(m["emotion"].unique())
    y = m["emotion"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    folds = (m["speaker"].astype(int).rank(method="dense").to_numpy().astype(int) - 1) // 2  # 10 speakers → 5 folds
    return m, classes, y, folds


def emodb_mels(m, n_windows: int) -> np.ndarray:
    from affectlens.media import audio_windows, frame_times, load_audio, log_mel

    mels = []
    for p in m["path"]:
        a = load_audio(EMODB / p)
        mels.append(log_mel(audio_windows(a, frame_times(len(a) / 16_000, n_windows))).astype(np.float16))
    return np.stack(mels)  # (N, F, 1, 128, 251)


def egemaps_svm(m, y, folds) -> list:
    import opensmile
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals)
    x = np.stack([smile.process_file(str(EMODB / p)).to_numpy()[0] for p in m["path"]])
    preds = np.zeros_like(y)
    for k in np.unique(folds):
        tr, te = folds != k, folds == k
        clf = make_pipeline(StandardScaler(), LinearSVC(C=0.1, max_iter=20000)).fit(x[tr], y[tr])
        preds[te] = clf.predict(x[te])
    return preds.tolist()


def _audio_fold(args) -> list:
    k, mels_path, y, folds, epochs, n_windows = args
    import dataclasses

    import torch

    from affectlens.group.model import build_model, group_tiny
    from affectlens.training import seed_everything

    torch.set_num_threads(1)
    seed_everything(k)
    mels = np.load(mels_path, mmap_mode="r")
    tr, te = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
    net = build_model(dataclasses.replace(group_tiny("audio", n_audio=n_windows), n_classes=7))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)
    yt = torch.as_tensor(y)
    for _ in range(epochs):
        net.train()
        for b in np.array_split(np.random.permutation(tr), max(1, len(tr) // 16)):
            x = torch.from_numpy(mels[np.sort(b)].astype(np.float32))
            loss = torch.nn.functional.cross_entropy(net(audio=x), yt[np.sort(b)])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        logits = torch.cat([net(audio=torch.from_numpy(mels[b].astype(np.float32))) for b in np.array_split(te, 4)])
    return [(int(i), int(p)) for i, p in zip(te, logits.argmax(1))]


def run_emodb(out: Path, epochs: int, jobs: int, n_windows: int = 2) -> dict:
    from affectlens.metrics.classification import classification_report

    if not EMODB.exists():
        print(f"EmoDB part skipped: {EMODB} is missing")
        return {}
    m, classes, y, folds = emodb_table()
    mels_path = out / f"emodb_mels_{n_windows}.npy"
    if not mels_path.exists():
        out.mkdir(parents=True, exist_ok=True)
        np.save(mels_path, emodb_mels(m, n_windows))
    t0 = time.time()
    svm = classification_report(y, egemaps_svm(m, y, folds), classes)
    t_svm = time.time() - t0
    t0 = time.time()
    pred = np.zeros_like(y)
    with ProcessPoolExecutor(jobs) as ex:
        for part in ex.map(_audio_fold, [(k, mels_path, y, folds, epochs, n_windows) for k in range(5)]):
            for i, p in part:
                pred[i] = p
    ours = classification_report(y, pred, classes)
    t_ours = time.time() - t0
    uar = {name: float(np.mean([r["per_class"][c]["recall"] for c in classes])) for name, r in
           (("ours", ours), ("svm", svm))}
    print(f"\nEmoDB, 7 classes, 535 utterances, speaker-independent 5 folds (2 speakers each), chance 0.237")
    print(f"  audio branch (tiny, {n_windows} × 1-s log-mel windows, {epochs} epochs): acc {ours['accuracy']:.3f} "
          f"UAR {uar['ours']:.3f}  ({t_ours:.0f} s)")
    print(f"  eGeMAPSv02 functionals + linear SVM:  acc {svm['accuracy']:.3f} UAR {uar['svm']:.3f}  ({t_svm:.0f} s)")
    print(f"  ratio audio branch / eGeMAPS-SVM accuracy = {ours['accuracy'] / svm['accuracy']:.3f}")
    return {"audio_branch": ours, "egemaps_svm": svm, "uar": uar, "epochs": epochs, "windows": n_windows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench-out" / "group_synthetic")
    ap.add_argument("--train", type=int, default=300)
    ap.add_argument("--test", type=int, default=90)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--max-faces", type=int, default=4, help="3..N faces per synthetic clip (paper: 9).")
    ap.add_argument("--emodb-epochs", type=int, default=15)
    ap.add_argument("--jobs", type=int, default=3, help="Parallel trainings (1 thread each).")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--skip-emodb", action="store_true")
    a = ap.parse_args()
    from affectlens.files import write_json

    result = {}
    if not a.skip_synthetic:
        result["synthetic"] = run_synthetic(a.out, a.train, a.test, a.epochs, a.jobs, a.max_faces)
    if not a.skip_emodb:
        result["emodb"] = run_emodb(a.out, a.emodb_epochs, a.jobs)
    write_json(a.out / "results.json", result)
    print(f"\nwritten {a.out / 'results.json'}")


if __name__ == "__main__":
    main()
