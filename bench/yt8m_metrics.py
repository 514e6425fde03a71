"""GAP and mAP on 100,000 × 3,862 predictions: our vectorised metrics vs the YouTube-8M starter code.

The starter code's times come from ../shared/reference/yt8m_metrics.json (measured on this machine
kind, median of 3, float64 random scores, bool labels, top_k = 20). The inputs are rebuilt with
that file's own generator, and equality of values is checked on its 2,000-video reference arrays.

    .venv/bin/python bench/yt8m_metrics.py [--videos 100000] [--runs 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
REFERENCE = REPO.parent / "shared" / "reference" / "yt8m_metrics.json"


def _median_time(fn, runs: int) -> tuple[float, float]:
    times, value = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


def main() -> None:
    from affectlens.metrics.multilabel import all_metrics, gap, mean_average_precision

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    ref = json.loads(REFERENCE.read_text())
    ns: dict = {}
    exec(ref["generator"], ns)

    got = all_metrics(ns["predictions"], ns["labels"])
    worst = max(abs(got[k] - v) for k, v in ref["values"].items())
    print(f"values vs starter code on the {ref['inputs']['N']}-video reference arrays: "
          + ", ".join(f"{k} {got[k]:.9f}" for k in ref["values"]) + f"  (max |diff| {worst:.1e})")

    pred, labels = ns["make_arrays"](args.videos, seed=0)
    print(f"inputs: {pred.shape[0]:,} × {pred.shape[1]:,} float64 scores, bool labels")
    peer = ref["starter_code_timings_on_this_machine_kind"].get(f"N={args.videos}")
    for name, fn, key in (("GAP", lambda: gap(pred, labels, 20), "gap_s"),
                          ("mAP", lambda: mean_average_precision(pred, labels, 20), "map_s")):
        t, value = _median_time(fn, args.runs)
        line = f"{name}: {t:.2f} s (median of {args.runs}), value {value:.6g}"
        if peer:
            line += f"; starter code {peer[key]:.1f} s → {peer[key] / t:.1f}× faster"
        print(line)
    if peer is None:
        print(f"(no starter-code timing recorded for N={args.videos}; the file has {list(ref['starter_code_timings_on_this_machine_kind'])[1:]})")


if __name__ == "__main__":
    main()
