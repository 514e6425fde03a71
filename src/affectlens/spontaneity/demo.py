"""The spontaneity room's demo step: subject-independent CV of every method on synthetic pairs."""
from __future__ import annotations

from pathlib import Path

from affectlens.report.step import StepResult
from affectlens.spontaneity.recipe import PAPER_TABLE1, TrainConfig, run_cv
from affectlens.spontaneity.synth import synthetic_arrays


def demo_cv(n_subjects: int = 12, per_subject: int = 8, folds: int = 2, epochs: int = 10, seed: int = 0) -> dict:
    """A fast, self-contained run for demos (~20 s of CPU): 96 synthetic smiles (the easiest setting:
    difficulty 0, happiness only), 2 subject folds, 1 seed, tiny nets. The result has ``summary``
    and a flat ``methods`` view {method: {mean, std, paper_subset}} in %."""
    onset, apex, labels, subjects = synthetic_arrays(n_subjects, per_subject, seed=seed, difficulty=0.0,
                                                     expressions=("happiness",))
    result = run_cv(onset, apex, labels, subjects, "kfold", folds, (seed,), TrainConfig(size="tiny", epochs=epochs))
    # a flat view for reports: error % mean and std over folds, with the paper's USTC-NVIE subset figure
    result["methods"] = {m: {"mean": round(s["mean"], 2), "std": round(s["std_folds"], 2),
                             "paper_subset": PAPER_TABLE1[m][0]} for m, s in result["summary"].items()}
    return result


def demo_step(folder: Path) -> StepResult:
    """Posed vs spontaneous on a tiny synthetic set: subject-independent 2-fold CV of all methods."""
    res = demo_cv()
    rows = [[name, r["mean"], r["std"]] for name, r in res["methods"].items()] if "methods" in res else []
    return StepResult(summary="subject-independent CV on synthetic onset/apex pairs", metrics=res,
                      tables=[("Error rate (mean ± std over folds)", ["method", "error", "std"], rows)])
