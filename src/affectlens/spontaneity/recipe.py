"""Short recipes behind the CLI: preprocess a manifest, cross-validate, train for deployment, predict."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from affectlens.errors import AffectlensError, DataError
from affectlens.spontaneity.data import (LABEL_NAMES, PairSample, load_pairs, read_manifest, to_crop,
                                         write_manifest)
from affectlens.spontaneity.ensemble import ENSEMBLES, LinearSVMEnsemble, concat_features
from affectlens.spontaneity.protocol import (TrainConfig, error_bars_png, is_global_zero, net_outputs, run_cv,
                                             to_tensor, train_net)


def load_dataset(manifest: str | Path, progress: bool = False):
    """Manifest → (onset, apex, labels, subjects) arrays of 44 × 44 crops."""
    samples = read_manifest(manifest)
    if not progress:
        return load_pairs(samples)
    from affectlens.report.console import track

    it = iter(track(range(len(samples)), "reading pairs"))
    return load_pairs(samples, progress=lambda: next(it, None))


def cross_validate(manifest: str | Path, out: Optional[Path], protocol: str = "kfold", folds: int = 10,
                   seeds: Sequence[int] = (0, 1, 2), tc: TrainConfig = TrainConfig(), progress: bool = True,
                   on_fold=None, hardware=None, resume: bool = True) -> dict:
    """Read, cross-validate all nine methods (the nets' run folders under ``out/runs/``), write
    ``results.json`` and ``errors.png`` into ``out`` (rank 0 only)."""
    from affectlens.utils import write_json

    onset, apex, labels, subjects = load_dataset(manifest, progress and is_global_zero())
    if len(np.unique(labels)) < 2:
        raise DataError(manifest, "needs both posed and spontaneous samples")
    result = run_cv(onset, apex, labels, subjects, protocol, folds, seeds, tc, progress=progress, on_fold=on_fold,
                    out=out, hardware=hardware, resume=resume)
    result["manifest"] = str(manifest)
    if out is not None and is_global_zero():
        Path(out).mkdir(parents=True, exist_ok=True)
        write_json(Path(out) / "results.json", result)
        error_bars_png(result, Path(out) / "errors.png")
    return result


def demo_cv(n_subjects: int = 12, per_subject: int = 8, folds: int = 2, epochs: int = 10, seed: int = 0) -> dict:
    """A fast, self-contained run for demos (~20 s of CPU): 96 synthetic smiles (the easiest setting:
    difficulty 0, happiness only), 2 subject folds, 1 seed, tiny nets. The result has ``summary``
    and a flat ``methods`` view {method: {mean, std, paper_subset}} in %."""
    from affectlens.spontaneity.protocol import PAPER_TABLE1
    from affectlens.spontaneity.synth import synthetic_arrays

    onset, apex, labels, subjects = synthetic_arrays(n_subjects, per_subject, seed=seed, difficulty=0.0,
                                                     expressions=("happiness",))
    result = run_cv(onset, apex, labels, subjects, "kfold", folds, (seed,), TrainConfig(size="tiny", epochs=epochs))
    # a flat view for reports: error % mean and std over folds, with the paper's USTC-NVIE subset figure
    result["methods"] = {m: {"mean": round(s["mean"], 2), "std": round(s["std_folds"], 2),
                             "paper_subset": PAPER_TABLE1[m][0]} for m, s in result["summary"].items()}
    return result


def train_all(manifest: str | Path, out: str | Path, tc: TrainConfig = TrainConfig(), seed: int = 0,
              resume: bool = True, progress: bool = True, hardware=None) -> List[Path]:
    """Fit the seven nets and both SVMs on every pair of the manifest; one model file per method.

    Each net is an engine run in ``out/runs/<net name>/`` (resumed when interrupted; a finished one
    is not trained again) whose final weights become ``out/<net name>.pt``; ``out/<ensemble>.pt``
    holds the SVM and the names of its three member nets. Files are written by rank 0 only.
    """
    import torch
    from torch import nn

    from affectlens.spontaneity.model import table_configs
    from affectlens.training import load_checkpoint, save_checkpoint

    torch.set_num_threads(max(1, min(tc.threads, 2)))
    out = Path(out)
    onset, apex, labels, _ = load_dataset(manifest, progress and is_global_zero())
    o, a, y = to_tensor(onset), to_tensor(apex), torch.from_numpy(labels)
    feats, written = {}, []
    for config in table_configs(tc.size):
        net, res = train_net(config, o, a, y, tc, seed, out / "runs" / config.name, hardware=hardware, resume=resume)
        _, feats[config.name] = net_outputs(net, o, a)
        written.append(out / f"{config.name}.pt")
        if is_global_zero():  # the run's last epoch as a weights-only file
            run = load_checkpoint(res.last_path)
            save_checkpoint(written[-1], net, config, train=run["train"], epoch=run["epoch"], history=run["history"])
    for name, members in ENSEMBLES.items():
        svm = LinearSVMEnsemble(C=tc.svm_c, members=members).fit(concat_features(feats, members), labels, seed)
        written.append(out / f"{name}.pt")
        if is_global_zero():  # an SVM has no net weights: an empty state_dict, the SVM in ``extra``
            save_checkpoint(written[-1], nn.Module(), {"method": name}, train=tc, svm=svm.state())
    return written


def load_model(path: str | Path):
    """The spontaneity room's one checkpoint reader: a net file (``SpontaneityNet`` in eval mode; any
    engine ``best.pt``/``last.pt`` too) or an -SVM file (``LinearSVMEnsemble`` whose ``members`` name
    the three net files beside it)."""
    from affectlens.config import from_dict
    from affectlens.spontaneity.model import SpontaneityNet, SpontaneityNetConfig
    from affectlens.training import load_checkpoint

    ck = load_checkpoint(path)
    try:
        if "svm" in ck["extra"]:
            return LinearSVMEnsemble.from_state(ck["extra"]["svm"])
        net = SpontaneityNet(from_dict(SpontaneityNetConfig, ck["model"], source=path))
        net.load_state_dict(ck["state_dict"])
    except (TypeError, RuntimeError, ValueError, KeyError) as e:
        raise DataError(path, f"not a spontaneity checkpoint ({type(e).__name__})") from None
    return net.eval()


def predict_pair(onset: np.ndarray, apex: np.ndarray, checkpoint: str | Path,
                 method: str = "CompCNN-Comb-SVM") -> dict:
    """44 × 44 grey crops → {label, p_spontaneous, method}. ``checkpoint``: a net ``.pt`` or a folder
    written by ``train_all`` (then ``method`` picks one of its nine models)."""
    checkpoint = Path(checkpoint)
    o, a = to_tensor(onset[None]), to_tensor(apex[None])
    path = checkpoint / f"{method}.pt" if checkpoint.is_dir() else checkpoint
    if checkpoint.is_dir() and not path.is_file():
        raise DataError(path, f"no model {method!r} in {checkpoint} (train it with `affectlens spontaneity train`)")
    model = load_model(path)
    if isinstance(model, LinearSVMEnsemble):
        feats = {m: net_outputs(load_model(path.parent / f"{m}.pt"), o, a)[1] for m in model.members}
        p = float(model.predict_proba(concat_features(feats, model.members))[0, 1])
    else:
        method = model.config.name
        p = float(net_outputs(model, o, a)[0][0])
    return {"method": method, "label": LABEL_NAMES[int(p > 0.5)], "p_spontaneous": p,
            "p_posed": 1.0 - p}


def video_pair(path: str | Path, onset_frame: int, apex_frame: int, detector=None) -> Tuple[np.ndarray, np.ndarray]:
    """Two frames of a video (0-based indices in decoding order) → aligned 44 × 44 crops."""
    from affectlens.errors import MediaError
    from affectlens.media import iter_frames
    from affectlens.spontaneity.data import detect_and_align

    wanted = {onset_frame: None, apex_frame: None}
    last = max(wanted)
    for i, (_, _, rgb) in enumerate(iter_frames(path)):
        if i in wanted:
            wanted[i] = rgb
        if i >= last:
            break
    missing = [i for i, f in wanted.items() if f is None]
    if missing:
        raise MediaError(path, f"has fewer than {max(missing) + 1} frames (asked for frame {max(missing)})")
    return (detect_and_align(wanted[onset_frame], detector, f"{path}#frame{onset_frame}"),
            detect_and_align(wanted[apex_frame], detector, f"{path}#frame{apex_frame}"))


def image_pair(onset: str | Path, apex: str | Path, detector=None) -> Tuple[np.ndarray, np.ndarray]:
    """Two image files → aligned 44 × 44 crops (files already 44 × 44 are used as they are)."""
    return to_crop(onset, detector), to_crop(apex, detector)


def preprocess_manifest(manifest: str | Path, out: str | Path, detector=None,
                        progress: bool = True) -> Tuple[Path, List[str]]:
    """Raw frames → aligned crops under ``out/crops/`` and ``out/manifest.csv`` of the pairs that worked.

    Goes on past bad files and returns their one-line errors; crops already written are reused
    (resume), and every file is written atomically.
    """
    import cv2

    from affectlens.utils import atomic_path

    samples = read_manifest(manifest)
    out = Path(out)
    crops = out / "crops"
    crops.mkdir(parents=True, exist_ok=True)
    done: List[PairSample] = []
    failed: List[str] = []
    from affectlens.report.console import track

    for s in track(samples, "aligning faces", enabled=progress):
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in s.id)
        dst = {k: crops / f"{stem}_{k}.png" for k in ("onset", "apex")}
        try:
            for key, src in (("onset", s.onset), ("apex", s.apex)):
                if not dst[key].is_file():
                    crop = to_crop(src, detector)
                    with atomic_path(dst[key]) as tmp:
                        cv2.imwrite(str(tmp), crop)
        except AffectlensError as e:
            failed.append(str(e))
            continue
        done.append(PairSample(s.subject, dst["onset"], dst["apex"], s.label, s.id, s.expression))
    if not done:
        raise DataError(manifest, f"no pair could be preprocessed ({len(failed)} failed)")
    return write_manifest(out / "manifest.csv", done), failed
