"""Anonymization speed, faithfulness and face recall: affectlens vs deface vs decode+re-encode alone.

Runs, in one process tree and interleaved (so machine load hits all three alike), each as a fresh
subprocess timed end to end (start-up included for all):
  * ``baseline``: decode + re-encode alone (decoded frames straight into the same H.264 writer
    ours uses, same preset and crf, audio copied; decoding in its own thread as in ours);
  * ``ours``: ``affectlens anonymize IN --out OUT --threshold T`` (defaults otherwise);
  * ``deface``: ``deface IN -o OUT --keep-audio --thresh T`` (its CLI; skipped with a message when
    it cannot run, never faked).
on ../shared/data/media/clips/short_hamilton_clip.mp4 (640x360) and on 720p and 1080p clips made
from it (upscaled, audio copied). Prints median fps over ``--runs`` and the ratios ours/deface and
ours/baseline, and the median and range of every run's own ratio to the baseline run just before it
(a pair shares the machine's state, which on a shared machine drifts between runs); checks each
output's size, frame count, rate, start and audio against the input;
and measures face recall on the native clip: faces an independent detector (dlib's HOG) finds in
a sampled original frame and still finds at the same place in the anonymized frame are leaks.

    .venv/bin/python bench/anonymize.py --runs 3
    .venv/bin/python bench/anonymize.py --runs 3 --deface-runs 0 --frames 275 --variant "--detect-every 3"

``--variant OPTIONS`` times ours once more per run with those CLI options (same interleaving);
``--deface-runs 0`` skips the (very slow) peer.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
CLIP = REPO.parent / "shared" / "data" / "media" / "clips" / "short_hamilton_clip.mp4"
PY = sys.executable


def make_scaled(src: Path, dst: Path, width: int, height: int, frames: int) -> Path:
    """The first ``frames`` frames of ``src`` upscaled to ``width``x``height``, same timestamps and audio."""
    import cv2

    from affectlens.media import VideoWriter, iter_frames, probe

    info = probe(src)
    with VideoWriter(dst, info.rate, width, height, time_base=info.time_base, audio_from=src, crf=18) as wr:
        for i, (_, frame, rgb) in enumerate(iter_frames(src)):
            if i >= frames:
                break
            wr.write(cv2.resize(rgb, (width, height), interpolation=cv2.INTER_CUBIC), pts=frame.pts)
    return dst


def baseline_main(src: str, dst: str) -> None:
    """Decode + re-encode alone (used as a subprocess): every decoded frame goes straight to the
    encoder, decoding in its own thread as in ours, with the very writer ours uses (``VideoWriter``,
    libx264 ``veryfast``, the same crf, audio packets copied) — nothing of ours but the plumbing."""
    import queue
    import threading

    from affectlens.media import VideoWriter, decoded_frames
    from affectlens.media.pipeline import encode_frame
    from affectlens.privacy.anonymize import AnonymizeConfig

    q: queue.Queue = queue.Queue(maxsize=8)
    end = object()

    def decode() -> None:
        try:
            for frame in decoded_frames(Path(src)):
                q.put(frame)
        finally:
            q.put(end)

    threading.Thread(target=decode, daemon=True).start()
    with VideoWriter.like(src, dst, crf=AnonymizeConfig().crf) as writer:
        while (frame := q.get()) is not end:
            encode_frame(writer, frame)


def commands(tool: str, src: Path, dst: Path, threshold: float) -> list[str]:
    if tool == "baseline":
        return [PY, __file__, "--baseline", str(src), str(dst)]
    if tool.startswith("ours"):  # "ours" = defaults; "ours --detect-every 3" = with those options
        return [PY, "-m", "affectlens", "anonymize", str(src), "--out", str(dst), "--threshold", str(threshold),
                "--no-resume", "--json", *shlex.split(tool[4:])]
    return [PY, "-m", "deface.deface", str(src), "-o", str(dst), "--keep-audio", "--thresh", str(threshold)]


def timed(cmd: list[str]) -> float | None:
    """Wall seconds of a subprocess, or None (with its error printed) when it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(f"  ! {Path(cmd[1]).name if cmd[1] != '-m' else cmd[2]} failed: {proc.stderr.strip().splitlines()[-1:]}")
        return None
    return time.perf_counter() - t0


def deface_available() -> str | None:
    """None when deface's CLI can run here, else the reason."""
    proc = subprocess.run([PY, "-c", "import deface.deface"], capture_output=True, text=True, check=False)
    return None if proc.returncode == 0 else proc.stderr.strip().splitlines()[-1]


def faithfulness(src: Path, out: Path) -> dict:
    from affectlens.media import probe

    a, b = probe(src), probe(out)
    audio = "copied" if (b.audio and a.audio and b.audio.codec == a.audio.codec
                         and b.audio.sample_rate == a.audio.sample_rate) else "lost" if not b.audio else "changed"
    return {"size": f"{b.width}x{b.height}" + ("" if (a.width, a.height) == (b.width, b.height) else " (!)"),
            "frames": f"{b.frame_count}" + ("" if a.frame_count == b.frame_count else f" (!{a.frame_count})"),
            "rate": f"{b.rate}" + ("" if a.rate == b.rate else " (!)"),
            "start": f"{b.start_time:.3f}" + ("" if abs(a.start_time - b.start_time) < 1e-3 else " (!)"),
            "audio": audio}


def _thumbs(path: Path, size=(64, 36)) -> tuple[list[np.ndarray], list[np.ndarray]]:
    import cv2

    from affectlens.media import iter_frames

    full, small = [], []
    for _, _, rgb in iter_frames(path):
        full.append(rgb)
        small.append(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA).astype(np.float32))
    return full, small


def leaks(src: Path, outputs: dict[str, Path], every: int) -> dict[str, dict]:
    """Reference faces = dlib HOG (upsample 1) on every ``every``-th original frame; a face leaks
    when HOG finds it again (IoU > 0.3) in the matching anonymized frame. Output frames are matched
    to the original by picture (thumbnail distance), since deface re-times some clips."""
    import dlib

    from affectlens.faces.track import box_iou

    hog = dlib.get_frontal_face_detector()
    orig, orig_s = _thumbs(src)
    refs = {}
    for i in range(0, len(orig), every):
        found = hog(orig[i], 1)
        if len(found):
            refs[i] = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in found], np.float32)
    total = sum(len(b) for b in refs.values())
    result = {}
    for name, path in outputs.items():
        frames, small = _thumbs(path)
        stack = np.stack(small)  # (N, 36, 64, 3)
        leaked = 0
        for i, boxes in refs.items():
            j = int(np.argmin(((stack - orig_s[i]) ** 2).mean(axis=(1, 2, 3))))
            again = hog(frames[j], 1)
            if len(again):
                b2 = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in again], np.float32)
                leaked += int((box_iou(boxes, b2).max(1) > 0.3).sum())
        result[name] = {"reference_faces": total, "leaked": leaked,
                        "recall": round(1 - leaked / total, 4) if total else None}
    return result


def run_clip(name: str, src: Path, tools: list[str], runs: int, threshold: float, work: Path,
             deface_runs: int) -> dict:
    from affectlens.media import probe

    n = probe(src).frame_count
    times: dict[str, list[float]] = {t: [] for t in tools}
    cost: dict[str, list[float]] = {t: [] for t in tools if t != "baseline"}  # per run: seconds ÷ baseline's
    outs = {t: work / f"{name}_{t.replace(' ', '').replace('--', '_')}.mp4" for t in tools}
    for r in range(runs):
        base = None
        for tool in tools:  # interleaved: A B C A B C ...
            if tool == "deface" and r >= deface_runs:
                continue
            s = timed(commands(tool, src, outs[tool], threshold))
            if s is not None:
                times[tool].append(s)
                if tool == "baseline":
                    base = s
                elif base is not None:
                    cost[tool].append(s / base)
            print(f"  {name} run {r + 1} {tool}: {'failed' if s is None else f'{n / s:.2f} fps'}", flush=True)
    fps = {t: (n / statistics.median(v) if v else None) for t, v in times.items()}
    faithful = {t: faithfulness(src, outs[t]) for t in tools if outs[t].exists() and fps[t]}
    return {"clip": name, "frames": n, "fps": fps, "runs": {t: v for t, v in times.items()}, "cost": cost,
            "faithful": faithful, "outputs": {t: str(p) for t, p in outs.items()}}


def paired_cost(values: list[float]) -> str:
    """Median (range) of the per-run cost ratios: each run's baseline ran just before, so the pair
    shares the machine's state even when its speed drifts between runs."""
    if not values:
        return "n/a"
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def print_report(rows: list[dict], recall: dict | None, threshold: float, deface_note: str | None) -> None:
    print(f"\n## Speed (median fps of each run, start-up included; threshold {threshold})")
    print("| clip | frames | tool | fps | vs deface | cost vs baseline decode+encode | same, median (range) of the runs' pairs |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        f = r["fps"]
        fmt = lambda v: f"{v:.2f}" if v else "n/a"
        for tool in f:
            print(f"| {r['clip']} | {r['frames']} | {tool} | {fmt(f[tool])} | "
                  f"{ratio(f[tool], f.get('deface')) if tool.startswith('ours') else ''} | "
                  f"{ratio(f.get('baseline'), f[tool]) if tool != 'baseline' else ''} | "
                  f"{paired_cost(r['cost'][tool]) if tool != 'baseline' else ''} |")
    if deface_note:
        print(f"\ndeface could not run here ({deface_note}); its columns are n/a, not estimated.")
    print("\n## Faithfulness of the outputs ((!) = differs from the input)")
    print("| clip | tool | size | frames | rate | video start s | audio |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        for tool, f in r["faithful"].items():
            print(f"| {r['clip']} | {tool} | {f['size']} | {f['frames']} | {f['rate']} | {f['start']} | {f['audio']} |")
    if recall:
        print("\n## Face recall on the native clip (dlib HOG reference faces still found after anonymization)")
        print("| tool | reference faces | leaked | recall |")
        print("|---|---|---|---|")
        for tool, v in recall.items():
            print(f"| {tool} | {v['reference_faces']} | {v['leaked']} | {v['recall']} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--deface-runs", type=int, default=None,
                    help="fewer runs for the (slow) peer (0 = skip it); default --runs")
    ap.add_argument("--variant", action="append", default=[], metavar="OPTIONS",
                    help='also time ours with these CLI options, e.g. --variant "--detect-every 3" (repeatable)')
    ap.add_argument("--threshold", type=float, default=0.2, help="same score threshold for both tools")
    ap.add_argument("--frames", type=int, default=90, help="frames in the made 720p/1080p clips")
    ap.add_argument("--sizes", default="native,720p,1080p", help="comma-separated, from native, 720p, 1080p")
    ap.add_argument("--recall-every", type=int, default=5, help="reference frame step for the recall check (0 = off)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--keep", type=Path, default=None, help="keep outputs in this folder")
    ap.add_argument("--baseline", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline:
        return baseline_main(*args.baseline)
    clips = {"native": CLIP, "720p": (1280, 720), "1080p": (1920, 1080)}
    unknown = [n for n in args.sizes.split(",") if n not in clips]
    if unknown:
        ap.error(f"--sizes: unknown {', '.join(unknown)} (choose from {', '.join(clips)})")
    if not CLIP.exists():
        sys.exit(f"{CLIP} is missing: this benchmark needs ../shared/data")
    note = deface_available()
    deface_runs = args.runs if args.deface_runs is None else args.deface_runs
    tools = ["baseline", "ours", *(f"ours {v}" for v in args.variant)] + ([] if note or not deface_runs else ["deface"])
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_anonymize_"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.sizes.split(","):
        spec = clips[name]
        src = spec if isinstance(spec, Path) else make_scaled(CLIP, work / f"src_{name}.mp4", *spec, args.frames)
        print(f"{name}: {src}", flush=True)
        rows.append(run_clip(name, src, tools, args.runs, args.threshold, work, deface_runs))
    recall = None
    native = next((r for r in rows if r["clip"] == "native"), None)
    if args.recall_every and native:
        outs = {t: Path(p) for t, p in native["outputs"].items() if t != "baseline" and Path(p).exists()}
        recall = leaks(CLIP, {"none (input re-encoded)": Path(native["outputs"]["baseline"]), **outs}, args.recall_every)
    print_report(rows, recall, args.threshold, note)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "recall": recall, "threshold": args.threshold}, indent=2))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
