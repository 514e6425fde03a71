"""The paper's experiments over the recipe: Table 2 (``ablation``, seven input combinations × frame
counts) and Table 1 (``sweep``, the share of synthetic clips), each a set of resumable engine runs
printed beside the paper's figures."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Dict, Optional, Sequence

from affectlens.files import write_json
from affectlens.group.recipe import Log, TrainConfig, train
from affectlens.training.hardware import Hardware

# ----------------------------------------------------------------------------- Table 2 ablation
# (input name, model modality, uses real clips, uses synthetic clips)
ABLATION_ROWS = (
    ("audio", "audio", True, False),
    ("synt_video", "video", False, True),
    ("video", "video", True, False),
    ("video + synt_video", "video", True, True),
    ("synt_video + audio", "fusion", False, True),
    ("video + audio", "fusion", True, False),
    ("video + audio + synt_video", "fusion", True, True),
)
PAPER_TABLE2 = {  # VGAF validation accuracy (%), 5 and 75 frames
    "audio": (56.40, 54.96), "synt_video": (57.44, 60.05), "video": (73.62, 74.15),
    "video + synt_video": (75.98, 79.24), "synt_video + audio": (62.14, 58.75),
    "video + audio": (76.11, 77.42), "video + audio + synt_video": (78.07, 78.72),
}


def ablation(cfg: TrainConfig, data: Path, val: Path, synthetic: Path, out: Path, frames: Sequence[int] = (5, 75),
             progress: bool = True, log: Log = print, hardware: Optional[Hardware] = None) -> dict:
    """Train and evaluate Table 2's seven input combinations for each frame count; resumable
    (a run whose ``eval/eval.json`` exists is read back, not retrained). Under DDP every process
    trains every run; rank 0 alone evaluates and writes the table (other ranks return ``{}``)."""
    out = Path(out)
    results: Dict[str, Dict[int, float]] = {}
    zero = True
    for n in frames:
        for name, modality, use_real, use_syn in ABLATION_ROWS:
            run = out / f"f{n}" / name.replace(" + ", "+")
            done = run / "eval" / "eval.json"
            if not done.exists():
                log(f"ablation: {name}, {n} frames")
                c = dataclasses.replace(cfg, modality=modality, frames=n, audio_frames=0)
                zero = train(c, data if use_real else None, run, val=val, synthetic=synthetic if use_syn else None,
                             progress=progress, log=log, hardware=hardware)["is_global_zero"]
            if zero:
                results.setdefault(name, {})[n] = json.loads(done.read_text())["accuracy"]
    if not zero:
        return {}
    table = format_table2(results, frames)
    log(table)
    write_json(out / "ablation.json", {"ours": results, "paper": PAPER_TABLE2, "frames": list(frames)})
    (out / "ablation.txt").write_text(table + "\n", encoding="utf-8")
    return results


def format_table2(results: Dict[str, Dict[int, float]], frames: Sequence[int] = (5, 75)) -> str:
    """Table 2's layout: one row per input combination, ours beside the paper's, per frame count."""
    head = f"{'':14}{'Input data':28}" + "".join(f"{f'{n} frames: ours':>17}{'paper':>9}" for n in frames)
    lines = [head, "-" * len(head)]
    for i, (name, modality, _, _) in enumerate(ABLATION_ROWS):
        group = ("Video" if modality != "fusion" else "Audio + video") if i in (0, 4) else ""
        cells = ""
        for k, n in enumerate(frames):
            ours = results.get(name, {}).get(n)
            paper = PAPER_TABLE2[name][(5, 75).index(n)] if n in (5, 75) else float("nan")
            cells += f"{'—' if ours is None else f'{100 * ours:.2f}%':>17}{f'{paper:.2f}%':>9}"
        lines.append(f"{group:14}{name:28}{cells}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- Table 1 sweep
PAPER_TABLE1 = {0.1: 74.80, 0.2: 74.93, 0.3: 75.07, 0.4: 74.41, 0.5: 74.28}  # VGAF validation accuracy (%)


def sweep(cfg: TrainConfig, data: Path, val: Path, synthetic: Path, out: Path,
          ratios: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5), progress: bool = True, log: Log = print,
          hardware: Optional[Hardware] = None) -> dict:
    """Table 1: train ``cfg`` (the paper: the video model) on the real clips plus synthetic ones making
    up each ``ratio`` of the training set, evaluate each on ``val``; resumable like ``ablation``.
    Writes ``sweep.json`` and ``sweep.txt`` (ours beside the paper's); other DDP ranks return ``{}``."""
    out = Path(out)
    results: Dict[float, float] = {}
    zero = True
    for r in ratios:
        run = out / f"ratio{round(100 * r):02d}"
        done = run / "eval" / "eval.json"
        if not done.exists():
            log(f"sweep: synthetic ratio {r:.0%}")
            zero = train(dataclasses.replace(cfg, synthetic_ratio=float(r)), data, run, val=val, synthetic=synthetic,
                         progress=progress, log=log, hardware=hardware)["is_global_zero"]
        if zero:
            results[float(r)] = json.loads(done.read_text())["accuracy"]
    if not zero:
        return {}
    table = format_table1(results)
    log(table)
    write_json(out / "sweep.json", {"ours": {str(k): v for k, v in results.items()},
                                    "paper": {str(k): v for k, v in PAPER_TABLE1.items()}, "modality": cfg.modality})
    (out / "sweep.txt").write_text(table + "\n", encoding="utf-8")
    return results


def format_table1(results: Dict[float, float]) -> str:
    """Table 1's layout: one row per synthetic ratio, our validation accuracy beside the paper's."""
    head = f"{'Synthetic ratio':>16}{'ours':>10}{'paper':>10}"
    lines = [head, "-" * len(head)]
    for r in sorted(set(results) | set(PAPER_TABLE1)):
        ours, paper = results.get(r), PAPER_TABLE1.get(r)
        lines.append(f"{r:>16.0%}{'—' if ours is None else f'{100 * ours:.2f}%':>10}"
                     f"{'—' if paper is None else f'{paper:.2f}%':>10}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- demo
