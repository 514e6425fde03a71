"""GAP and mAP on 100,000 × 3,862 predictions: our vectorised metrics vs the YouTube-8M starter code.

The starter code's times come from ../shared/reference/yt8m_metrics.json (measured on this machine
kind, median of 3, float64 random scores, bool labels, top_k = 20). The inputs are rebuilt with
that file's own generator, and equality of values is checked on its 2,000-video reference arrays.

Because the recorded times come from a quiet machine and this one may be shared, the bench also
times, in the same run, a loop-for-loop re-implementation of the starter code's algorithm
(per-video top-k triplets, heap accumulation, Python sort and AP loop) on the 10,000-video size,
which gives a ratio that does not depend on the machine's load.

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


def starter_style_gap_map(pred, labels, k: int = 20) -> tuple[float, float, float, float]:
    """The starter code's algorithm written out again (our rewrite): returns (gap, map, gap_s, map_s)."""
    import heapq
    import random

    import numpy as np

    def ap(preds, acts, total_pos):
        preds, acts = np.array(preds), np.array(acts)
        random.seed(0)
        perm = random.sample(range(len(preds)), len(preds))
        preds, acts = preds[perm], acts[perm]
        order = sorted(range(len(preds)), key=lambda i: preds[i], reverse=True)
        if total_pos == 0:
            return 0.0
        hits, out = 0.0, 0.0
        for rank, i in enumerate(order):
            if acts[i] > 0:
                hits += 1
                out += hits / (rank + 1) / total_pos
        return out

    def triplets():
        per_class_p = [[] for _ in range(pred.shape[1])]
        per_class_a = [[] for _ in range(pred.shape[1])]
        for v in range(pred.shape[0]):
            for c in np.argpartition(pred[v], -k)[-k:]:
                per_class_p[c].append(pred[v][c])
                per_class_a[c].append(labels[v][c])
        positives = [np.sum(labels[:, c]) for c in range(pred.shape[1])]
        return per_class_p, per_class_a, positives

    t0 = time.perf_counter()
    cp, ca, pos = triplets()
    heap: list = []
    for p, a in zip([x for l in cp for x in l], [x for l in ca for x in l]):
        heapq.heappush(heap, (p, a))
    ps, acts = zip(*heap)
    gap_value = ap(ps, acts, sum(pos))
    gap_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    cp, ca, pos = triplets()
    aps = []
    for c in range(pred.shape[1]):
        heap = []
        for p, a in zip(cp[c], ca[c]):
            heapq.heappush(heap, (p, a))
        aps.append(ap(*zip(*heap), pos[c]) if heap else 0.0)
    valid = [a for a, n in zip(aps, pos) if n > 0]
    return gap_value, float(np.mean(valid)), gap_s, time.perf_counter() - t0


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

    small_pred, small_y = ns["make_arrays"](10_000, seed=0)
    g_ref, m_ref, g_s, m_s = starter_style_gap_map(small_pred, small_y)
    g_ours, t_g = None, []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        g_ours = gap(small_pred, small_y)
        t_g.append(time.perf_counter() - t0)
    t_m, m_ours = _median_time(lambda: mean_average_precision(small_pred, small_y), args.runs)
    t_g = statistics.median(t_g)
    print(f"same run, 10,000 videos: starter-style loops GAP {g_s:.2f} s / mAP {m_s:.2f} s; "
          f"ours GAP {t_g:.2f} s ({g_s / t_g:.1f}× faster) / mAP {t_m:.2f} s ({m_s / t_m:.1f}× faster); "
          f"values equal: GAP |Δ| {abs(g_ref - g_ours):.1e}, mAP |Δ| {abs(m_ref - m_ours):.1e}")
    del small_pred, small_y
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
