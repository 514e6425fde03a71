"""Attacks on anonymized faces: the paper's person recogniser and a real face recogniser.

* ``PersonRecognizer`` (§3.5): AlexNet-style convolutions plus extra dense layers (the paper adds 6)
  and a softmax over 20 identities, Adam, categorical cross-entropy; trained on original photos
  of the 20 people, then scored on held-out originals vs their obfuscated versions (Table 3).
* ``DlibEncoder``: dlib's ResNet face encoder (128-d, from ``face-recognition-models``); two faces
  are "the same person" when the Euclidean distance is below 0.6, the threshold dlib and the
  ``face_recognition`` library use.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from affectlens.faces.landmarks import as_rgb, detect_boxes, dlib_model_paths, shape_from_box
from affectlens.privacy.celeba import Arrays, as_batch
from affectlens.privacy.model import PersonRecognizer, RecognizerConfig
from affectlens.training.engine import FitResult, TrainModule, fit, loader

MATCH_THRESHOLD = 0.6


# ----------------------------------------------------------------------------- dlib 128-d encoder
@lru_cache(maxsize=None)
def _encoder():
    import dlib

    return dlib.face_recognition_model_v1(dlib_model_paths()["face_recognition_resnet"])


def encode_faces(rgb: np.ndarray, boxes: np.ndarray | None = None, upsample: int = 1) -> np.ndarray:
    """128-d dlib descriptors of the faces in an RGB image → ``(k, 128)`` (boxes default to dlib HOG)."""
    rgb = as_rgb(rgb)
    boxes = detect_boxes(rgb, upsample) if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)
    enc = _encoder()
    out = [np.asarray(enc.compute_face_descriptor(rgb, shape_from_box(rgb, b)), np.float32) for b in boxes]
    return np.stack(out) if out else np.zeros((0, 128), np.float32)


def face_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between ``(n, 128)`` and ``(m, 128)`` descriptors → ``(n, m)``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0))


def match_scores(probe: np.ndarray, probe_ids: np.ndarray, gallery: np.ndarray, gallery_ids: np.ndarray,
                 threshold: float = MATCH_THRESHOLD, exclude: np.ndarray | None = None) -> dict:
    """How often the attacker still finds the person.

    ``verified``: the probe is within ``threshold`` of at least one gallery photo of its own identity.
    ``identified``: the nearest gallery photo is of its identity and within ``threshold`` (rank-1).
    ``exclude`` ``(n, m)`` bool removes pairs (e.g. a probe's own original photo).
    NaN rows in ``probe`` (no descriptor) count as not matched.
    """
    d = face_distance(probe, gallery)
    if exclude is not None:
        d = np.where(exclude, np.inf, d)
    d = np.where(np.isnan(d), np.inf, d)
    same = np.asarray(probe_ids)[:, None] == np.asarray(gallery_ids)[None, :]
    own = np.where(same, d, np.inf).min(axis=1)
    nearest = d.argmin(axis=1)
    ident = same[np.arange(len(d)), nearest] & (d[np.arange(len(d)), nearest] < threshold)
    return {"verified": float((own < threshold).mean()) if len(d) else float("nan"),
            "identified": float(ident.mean()) if len(d) else float("nan"),
            "mean_own_distance": float(np.mean(own[np.isfinite(own)])) if np.isfinite(own).any() else float("nan"),
            "n": int(len(d))}


def _to_input(images: np.ndarray, hw: tuple[int, int]) -> torch.Tensor:
    ims = [cv2.resize(im, (hw[1], hw[0]), interpolation=cv2.INTER_AREA) for im in images]
    x = torch.as_tensor(np.stack(ims)).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W)
    return (x - 0.5) / 0.25


@dataclass(frozen=True)
class RecognizerTrain:
    """How the recogniser is fitted. ``data`` fingerprints the training photos and labels, so the
    engine refuses to continue a run folder trained on other people."""

    epochs: int = 60
    lr: float = 1e-4
    batch_size: int = 16
    seed: int = 0
    data: str = ""


class RecognizerModule(TrainModule):
    """The recogniser's own: cross-entropy, Adam and random left-right flips. It has no validation
    split (its test photos are what is reported), so the last epoch's net is the one scored."""

    def __init__(self, config: RecognizerConfig, recipe: RecognizerTrain):
        super().__init__(config, recipe, seed=recipe.seed)
        self.model = PersonRecognizer(config)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x = batch["image"]  # (B, 3, H, W) normalised
        flip = torch.rand(len(x), device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        loss = nn.functional.cross_entropy(self.model(x), batch["label"])
        self.record("train_loss", loss, len(x))
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.train_config.lr)


def train_recognizer(config: RecognizerConfig, images: np.ndarray, labels: np.ndarray, out: str | Path, *,
                     epochs: int = 60, lr: float = 1e-4, batch_size: int = 16, seed: int = 0, hardware=None,
                     resume: bool = True, progress: bool | None = None) -> tuple[PersonRecognizer, FitResult]:
    """Fit the recogniser on ``(n, H, W, 3)`` uint8 photos through the engine into ``out``; returns
    the last epoch's net (eval mode) and the engine's result (``history["train_loss"]``)."""
    x = _to_input(images, config.image_hw)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    digest = hashlib.sha1(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()[:16]
    module = RecognizerModule(config, RecognizerTrain(epochs, lr, batch_size, seed, digest))
    res = fit(module, loader(Arrays(image=x, label=y), batch_size, shuffle=True, seed=seed, collate_fn=as_batch),
              None, out=out, epochs=epochs, hardware=hardware, resume=resume, progress=progress)
    return module.model.eval(), res


@torch.no_grad()
def recognizer_accuracy(model: PersonRecognizer, images: np.ndarray, labels: np.ndarray) -> float:
    model.eval()
    x = _to_input(images, model.config.image_hw).to(next(model.parameters()).device)
    pred = model(x).argmax(1).cpu().numpy()
    return float((pred == np.asarray(labels)).mean())
