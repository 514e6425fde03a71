"""Posed vs spontaneous expressions from onset/apex face pairs (paper 001: comparison-layer CNNs).

    from affectlens.spontaneity import SpontaneityNet, spontaneity_small, run_cv, synthetic_arrays

model.py (DiffCNN / CompCNN-{Sub,Comb}@{1,2,3}), ensemble.py (the -SVM ensembles), data.py
(manifests, USTC-NVIE-style tree reader, detector + eye-line alignment to 44 × 44), synth.py
(synthetic pairs), recipe.py (training; subject-independent k-fold / LOSO CV), predict.py, demo.py, cli.py.
Names are imported lazily so that mounting the CLI does not import torch.
"""
from importlib import import_module

_EXPORTS = {
    "SpontaneityNet": "model", "SpontaneityNetConfig": "model", "ComparisonLayer": "model",
    "spontaneity_paper": "model", "spontaneity_small": "model", "spontaneity_tiny": "model",
    "table_configs": "model", "LinearSVMEnsemble": "ensemble", "ENSEMBLES": "ensemble",
    "PairSample": "data", "read_manifest": "data", "write_manifest": "data", "scan_ustc_nvie": "data",
    "detect_and_align": "data", "generate_pairs": "synth", "synthetic_arrays": "synth",
    "write_synthetic": "synth", "TrainConfig": "recipe", "run_cv": "recipe", "subject_folds": "recipe",
    "METHODS": "recipe", "PAPER_TABLE1": "recipe", "PAPER_TABLE2": "recipe", "demo_cv": "demo",
    "train_all": "recipe", "predict_pair": "predict", "preprocess_manifest": "data",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f"affectlens.spontaneity.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'affectlens.spontaneity' has no attribute {name!r}")
