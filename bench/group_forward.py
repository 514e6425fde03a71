"""Forward throughput of GroupEmotionNet (fusion, 5 video + 5 audio frames) and its utilisation.

For each size (paper = ViT-L/14 CLIP at 224, d_model 1024; base; tiny) it prints clips/s, the
forward's FLOPs (counted by torch.utils.flop_counter), the achieved GFLOP/s, and the utilisation
ratio: achieved GFLOP/s ÷ GFLOP/s of a large fp32 ``torch.matmul`` measured in the same run (the
practical peak of this CPU for dense math). Medians of several runs; weights are random (throughput
does not depend on them).

    .venv/bin/python bench/group_forward.py [--threads 2] [--repeats 3] [--sizes paper,base,tiny]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def forward_flops(model, video, audio) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(video=video, audio=audio)
    return counter.get_total_flops()


def time_forward(model, video, audio, repeats: int) -> float:
    import torch

    with torch.no_grad():
        model(video=video, audio=audio)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(video=video, audio=audio)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_size(size: str, batch: int, repeats: int) -> dict:
    import torch

    from affectlens.group.model import BUILDERS, build_model
    from affectlens.training import count_parameters

    cfg = BUILDERS[size]("fusion", "mean", 5, 5)
    model = build_model(cfg).eval()
    video = torch.rand(batch, 5, 3, cfg.img_size, cfg.img_size)
    audio = torch.randn(batch, 5, 1, 128, 251)
    flops = forward_flops(model, video, audio)
    sec = time_forward(model, video, audio, repeats)
    return {"size": size, "params_M": count_parameters(model) / 1e6, "batch": batch, "seconds": sec,
            "clips_per_s": batch / sec, "gflop_per_clip": flops / batch / 1e9, "gflops": flops / sec / 1e9}


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", default="paper,base,tiny")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    peak_before = matmul_gflops()
    rows = [bench_size(s, 4 if s == "tiny" else 1, a.repeats) for s in a.sizes.split(",")]
    peak = statistics.median([peak_before, matmul_gflops()])  # before and after: the machine is shared
    print(f"torch {torch.__version__}, {a.threads} threads; 2048² fp32 matmul: {peak:.1f} GFLOP/s (median)")
    print(f"{'size':6} {'params':>8} {'batch':>5} {'GFLOP/clip':>11} {'clips/s':>9} {'GFLOP/s':>8} {'÷ matmul':>9}")
    for r in rows:
        print(f"{r['size']:6} {r['params_M']:7.1f}M {r['batch']:5d} {r['gflop_per_clip']:11.1f} "
              f"{r['clips_per_s']:9.3f} {r['gflops']:8.1f} {r['gflops'] / peak:9.2f}")


if __name__ == "__main__":
    main()
