"""Load a trained spontaneity model and classify one onset/apex pair (images or two video frames)."""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np

from affectlens.config import from_dict
from affectlens.errors import DataError, MediaError
from affectlens.media import iter_frames
from affectlens.spontaneity.data import LABEL_NAMES, detect_and_align, to_crop
from affectlens.spontaneity.ensemble import LinearSVMEnsemble, concat_features
from affectlens.spontaneity.model import SpontaneityNet, SpontaneityNetConfig
from affectlens.spontaneity.recipe import net_outputs, to_tensor
from affectlens.training import load_checkpoint


def load_model(path: str | Path):
    """The spontaneity room's one checkpoint reader: a net file (``SpontaneityNet`` in eval mode; any
    engine ``best.pt``/``last.pt`` too) or an -SVM file (``LinearSVMEnsemble`` whose ``members`` name
    the three net files beside it)."""
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
