"""The videotag room's demo: logistic vs MoE, visual vs visual+audio and the ensembles on synthetic
class-prototype features written as real TFRecords (``demo_run``), shown as one step of ``affectlens demo``."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from affectlens.files import write_json
from affectlens.metrics.multilabel import all_metrics
from affectlens.report.step import StepResult
from affectlens.videotag import data as D
from affectlens.videotag import ensemble as E
from affectlens.videotag.recipe import TrainConfig, fit_scores
from affectlens.videotag.synth import synth_video_level


def demo_run(out_dir: str | Path, epochs: int = 4, log: Callable[[str], None] = print) -> dict:
    """Sub-minute demo on synthetic class-prototype features written as real TFRecords:
    logistic vs MoE, visual vs visual+audio, and mean/max ensembles. Returns JSON-able metrics."""
    out_dir = Path(out_dir)
    paths = synth_video_level(out_dir / "shards", num_shards=4, videos_per_shard=150, num_classes=40)
    tr, ev = D.read_video_level(paths[:3]), D.read_video_level(paths[3:])
    ytr, yev = tr.targets(), ev.targets()
    runs = {"logistic rgb+audio": ("logistic", ("rgb", "audio")), "moe rgb+audio": ("moe", ("rgb", "audio")),
            "moe rgb": ("moe", ("rgb",)), "moe audio": ("moe", ("audio",))}
    results, scores = {}, {}
    for name, (kind, mods) in runs.items():
        cfg = TrainConfig(model={"kind": kind, **({"num_experts": 2} if kind == "moe" else {})},
                          modalities=mods, epochs=epochs, batch_size=64, lr=3e-3, threads=1)
        scores[name] = fit_scores(tr.features(mods), ytr, ev.features(mods), cfg, log=lambda s: None)
        results[name] = all_metrics(scores[name], yev)
        log(f"{name}: GAP {results[name]['gap']:.3f}")
    both = [scores["logistic rgb+audio"], scores["moe rgb+audio"]]
    results["mean ensemble"] = all_metrics(E.mean_ensemble(both), yev)
    results["max ensemble"] = all_metrics(E.max_ensemble(both), yev)
    summary = {"synthetic": True, "train_videos": len(tr), "eval_videos": len(ev), "results": results}
    write_json(out_dir / "metrics.json", summary)
    return summary


def demo_step(folder: Path) -> StepResult:
    """Logistic vs MoE, visual vs visual+audio on synthetic YouTube-8M-format features."""
    res = demo_run(folder, log=lambda s: None)
    rows = [[name, m["gap"], m["hit_at_one"], m["perr"], m["map"]] for name, m in res["results"].items()]
    best = max(res["results"], key=lambda k: res["results"][k]["gap"])
    return StepResult(
        summary=f"synthetic features, {res['train_videos']} train / {res['eval_videos']} eval videos; "
                f"best GAP {res['results'][best]['gap']:.3f} ({best})",
        metrics=res["results"],
        tables=[("Video tagging on synthetic features (labelled synthetic)", ["model", "GAP", "Hit@1", "PERR", "mAP"],
                 rows)],
    )
