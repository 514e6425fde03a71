"""How often may the anonymizer run its detector? Mask coverage against a detector run on every frame.

``--detect-every n`` detects on every n-th frame and lets the tracker interpolate (and pre-roll /
hold) the boxes in between; that is where a moving or newly appearing face could slip out. This
bench measures it directly: the reference is CenterFace at full resolution (threshold 0.5) on
*every* frame of the original; a reference face counts as covered in a frame when at least 90 % of
its box lies under that frame's masks (the ellipses drawn from the sidecar's boxes with the run's
margin). Clips: the real ones in ../shared/data/media/clips and a 720p "fast pan" made from
../shared/data/media/images/multi_face.jpg (the camera sweeps across nine faces at 23 px per frame
on average, 37 px at most, while zooming ±30 %), which is harder than any of the real clips.

    .venv/bin/python bench/anonymize_coverage.py                  # detect-every 1 2 3 4 6
    .venv/bin/python bench/anonymize_coverage.py --every 2 3 --clips pan
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
MEDIA = REPO.parent / "shared" / "data" / "media"
CLIPS = ["short_hamilton_clip.mp4", "WolfgangLanger_Pexels.mp4", "single_face.mp4", "face_noface.mov",
         "noface_face.mov"]


def make_pan(dst: Path, frames: int = 150, width: int = 1280, height: int = 720) -> Path:
    """A 25 fps clip of a camera panning back and forth (twice) and zooming over multi_face.jpg."""
    import cv2

    from affectlens.media import VideoWriter

    img = cv2.cvtColor(cv2.imread(str(MEDIA / "images" / "multi_face.jpg")), cv2.COLOR_BGR2RGB)
    canvas = cv2.resize(img, (round(img.shape[1] * 2 * height / img.shape[0]), 2 * height))
    with VideoWriter(dst, Fraction(25), width, height) as wr:
        for i in range(frames):
            t = i / frames
            x = (canvas.shape[1] - width) * (0.5 - 0.5 * np.cos(4 * np.pi * t))
            z = 1.0 + 0.3 * np.sin(6 * np.pi * t)
            ch, cw = int(height * z), int(width * z)
            y0, x0 = (canvas.shape[0] - ch) // 2, int(min(max(0, x), canvas.shape[1] - cw))
            wr.write(cv2.resize(canvas[y0:y0 + ch, x0:x0 + cw], (width, height), interpolation=cv2.INTER_AREA))
    return dst


def masked(boxes: list, margin: float, w: int, h: int) -> np.ndarray:
    """The union of a frame's ellipse masks (weight > 0.5) as a boolean (h, w) image."""
    from affectlens.privacy.masking import expand_box, region_mask

    m = np.zeros((h, w), bool)
    for b in boxes:
        b = np.asarray(b, np.float32)
        x1, y1, x2, y2 = expand_box(b, margin, w, h)
        if x2 > x1 and y2 > y1:
            m[y1:y2, x1:x2] |= region_mask("ellipse", b, margin, (x1, y1, x2, y2)) > 0.5
    return m


def coverage(refs: list[np.ndarray], frames: list[dict], margin: float, w: int, h: int) -> np.ndarray:
    """Share of each reference box under the masks of its frame, for every reference face."""
    out = []
    for ref, frame in zip(refs, frames):
        if not len(ref):
            continue
        m = masked(frame["boxes"], margin, w, h)
        for x1, y1, x2, y2 in np.round(ref).astype(int):
            x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
            out.append(m[y1:y2, x1:x2].mean() if x2 > x1 and y2 > y1 else 1.0)
    return np.asarray(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--every", type=int, nargs="+", default=[1, 2, 3, 4, 6])
    ap.add_argument("--clips", nargs="+", default=["pan", *CLIPS], help="names in media/clips, or 'pan'")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not MEDIA.exists():
        sys.exit(f"{MEDIA} is missing: this benchmark needs ../shared/data")
    from affectlens.faces.detect import CenterFace
    from affectlens.media import iter_frames
    from affectlens.privacy import options as anonymize_module
    from affectlens.privacy.anonymize import AnonymizeConfig, anonymize_video, sidecar_path

    # This bench measures past the limit the anonymizer enforces, on purpose: it is the evidence
    # for MAX_DETECT_EVERY. Users cannot raise it; the bench lifts it in its own process only.
    anonymize_module.MAX_DETECT_EVERY = max(anonymize_module.MAX_DETECT_EVERY, *args.every)

    reference = CenterFace(threshold=0.5, scale=1.0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_coverage_") as tmp:
        work = Path(tmp)
        for name in args.clips:
            src = make_pan(work / "pan.mp4") if name == "pan" else MEDIA / "clips" / name
            refs, (h, w) = [], (0, 0)
            for _, _, rgb in iter_frames(src):
                refs.append(reference(rgb).boxes)
                h, w = rgb.shape[:2]
            for every in args.every:
                cfg = AnonymizeConfig(detect_every=every)
                dst = work / f"{Path(name).stem}_{every}.mp4"
                c0 = time.process_time()
                anonymize_video(src, dst, cfg)
                cpu = time.process_time() - c0
                cov = coverage(refs, json.loads(sidecar_path(dst).read_text())["frames"], cfg.margin, w, h)
                row = {"clip": name, "detect_every": every, "frames": len(refs), "reference_faces": int(cov.size),
                       "covered": float((cov >= 0.9).mean()) if cov.size else None,
                       "min_coverage": float(cov.min()) if cov.size else None, "cpu_seconds": round(cpu, 2)}
                rows.append(row)
                print(f"  {name} every {every}: {row['covered']} covered, cpu {cpu:.1f} s", flush=True)
    print("\n| clip | frames | detect every | reference faces | covered (≥ 90 % of the box) | lowest coverage | CPU s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cov = "n/a" if r["covered"] is None else f"{100 * r['covered']:.2f} %"
        low = "n/a" if r["min_coverage"] is None else f"{r['min_coverage']:.2f}"
        print(f"| {r['clip']} | {r['frames']} | {r['detect_every']} | {r['reference_faces']} | {cov} | {low} | "
              f"{r['cpu_seconds']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
