"""The expression room's demo step: the shipped FER+ model (the default) on a real face and variants of it."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from affectlens.expression.predict import predict_images
from affectlens.report.step import StepResult


def demo_step(folder: Path) -> StepResult:
    """The shipped FER+ model (8 classes) on the astronaut's face and synthesized variants of it."""
    from skimage import data

    photo = data.astronaut()
    face = photo[60:180, 175:275]  # the face in the bundled portrait
    variants = {"original": face, "mirrored": face[:, ::-1], "darker": (face * 0.6).astype(np.uint8),
                "smaller": cv2.resize(cv2.resize(face, (32, 32)), face.shape[1::-1])}
    preds = predict_images(list(variants.values()))
    rows = [[name, p["label"], p["confidence"]] for name, p in zip(variants, preds)]
    return StepResult(
        summary=", ".join(f"{r[0]}: {r[1]} ({r[2]:.2f})" for r in rows),
        metrics={name: p for name, p in zip(variants, preds)},
        tables=[("Shipped expression model (FER+, 8 classes) on synthesized faces", ["face", "expression", "confidence"], rows)],
    )
