"""Peak memory of `videotag train` streaming its shards: MoE (2 mixtures) on 10 real shards and on
all 80, one epoch each, as a user runs it (a subprocess; the proportional set size (PSS) of it
and its reader processes, summed and sampled every 50 ms from /proc). Bound: the 80-shard peak
within 1.3x of the 10-shard peak, i.e. memory does not grow with the split.

Also, with ``--frame-level N``: DBoF on N synthetic frame-level videos x 300 frames (written once
by ``affectlens synth yt8m-frames``) against a tenth of them, and what one dense float32 array of
those frames would take.

    .venv/bin/python bench/videotag_memory.py [--frame-level 5000]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "youtube8m"
EXE = Path(sys.executable).with_name("affectlens")


def _tree_rss(pid: int) -> int:
    """Proportional resident bytes (PSS) of ``pid`` and its descendants (DataLoader workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:  # PSS: a forked reader shares the parent's pages, which RSS would count twice
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()
            total += next(int(line.split()[1]) for line in rollup if line.startswith("Pss:")) * 1024
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    return total


def peak_rss(args: list[str]) -> tuple[float, float]:
    """(peak MiB, seconds) of one command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(EXE), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.05)
    if proc.returncode != 0:
        sys.exit(f"failed: affectlens {' '.join(args)}\n{proc.stderr.read()[-2000:]}")
    return peak / 2**20, time.perf_counter() - t0


def _train(shards: list[Path], config: Path, out: Path) -> list[str]:
    """Train one epoch on every shard given (``--train-shards`` all of them, so neither run holds
    out shards to validate on: both do the same work, on 10 shards or on 80)."""
    return ["videotag", "train", *[a for s in shards for a in ("--data", str(s))], "--config", str(config),
            "--out", str(out), "--no-resume", "--epochs", "1", "--train-shards", str(len(shards))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frame-level", type=int, default=0, metavar="N", help="Also DBoF on N synthetic videos.")
    args = ap.parse_args()
    if not (DATA / "video_level_more").is_dir():
        sys.exit(f"skipped: {DATA / 'video_level_more'} not found")
    shards = sorted((DATA / "video_level").glob("*.tfrecord")) + sorted((DATA / "video_level_more").glob("*.tfrecord"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small, s_small = peak_rss(_train(shards[:10], REPO / "configs" / "videotag_moe.yaml", tmp / "a"))
        large, s_large = peak_rss(_train(shards, REPO / "configs" / "videotag_moe.yaml", tmp / "b"))
        ratio = large / small
        print(f"MoE, 1 epoch: 10 shards peak {small:.0f} MiB ({s_small:.0f} s); {len(shards)} shards peak "
              f"{large:.0f} MiB ({s_large:.0f} s); ratio {ratio:.2f}x (bound 1.30x) {'ok' if ratio <= 1.3 else 'OVER'}")
        if args.frame_level:
            n = args.frame_level
            frames = tmp / "frames"
            subprocess.run([str(EXE), "synth", "yt8m-frames", *map(str, shards), str(frames), "--frames", "300",
                            "--max-videos", str(n)], check=True, stdout=subprocess.DEVNULL)
            fl = sorted(frames.glob("*.tfrecord"))
            cfg = tmp / "dbof.yaml"
            cfg.write_text("model: dbof\nprojection: 512\nhidden: 256\nsamples: 16\nbatch_size: 64\nlr: 0.001\n")
            part, s_part = peak_rss(_train(fl[:max(1, len(fl) // 10)], cfg, tmp / "c"))
            whole, s_whole = peak_rss(_train(fl, cfg, tmp / "d"))
            dense = n * 300 * 1152 * 4 / 2**20
            print(f"DBoF, 1 epoch: a tenth of the shards peak {part:.0f} MiB ({s_part:.0f} s); {n} videos x 300 "
                  f"frames peak {whole:.0f} MiB ({s_whole:.0f} s); ratio {whole / part:.2f}x; one dense float32 "
                  f"array of those frames would be {dense:.0f} MiB")


if __name__ == "__main__":
    main()
