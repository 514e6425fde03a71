"""One checkpoint payload for every room, loadable with ``torch.load(weights_only=True)``.

Format 2 (written by the engine and by :func:`save_checkpoint`)::

    {"format": 2, "state_dict", "model": model config, "train": train config, "epoch", "best",
     "history", "extra": room data, "optimizer"?, "lightning"?}

Files of format 1 (``{"state_dict", "config", **extra}``, e.g. the expression weights shipped
before the engine) are read into the same shape, so every reader sees one layout.
"""
from __future__ import annotations

import dataclasses
import json
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from affectlens.errors import DataError
from affectlens.files import atomic_path

if TYPE_CHECKING:
    import torch

FORMAT = 2
KEYS = ("state_dict", "model", "train", "epoch", "best", "history", "extra")


def write_payload(path: str | Path, payload: dict) -> Path:
    """Write a payload atomically: a crash never leaves a half-written checkpoint."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def _plain(cfg: Any) -> dict:
    if cfg is None:
        return {}
    d = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    return json.loads(json.dumps(d, default=str))


def save_checkpoint(path: str | Path, model, config: Any, *, train: Any = None, epoch: int = 0,
                    best: dict | None = None, history: dict | None = None, **extra: Any) -> Path:
    """Write a weights-only payload for a net made outside the engine (an ensemble, a converted
    file, a test's model); ``extra`` must hold only tensors and plain Python values."""
    payload = {"format": FORMAT, "state_dict": model.state_dict(), "model": _plain(config), "train": _plain(train),
               "epoch": int(epoch), "best": dict(best or {}), "history": dict(history or {}), "extra": dict(extra)}
    return write_payload(path, payload)


def _from_format_1(ck: dict) -> dict:
    rest = {k: v for k, v in ck.items() if k not in ("state_dict", "config", "optimizer", "history", "epoch")}
    train = rest.pop("train_config", None) or rest.pop("train", None) or {}
    return {"format": FORMAT, "state_dict": ck["state_dict"], "model": ck["config"], "train": train,
            "epoch": int(ck.get("epoch", 0) or 0), "best": {}, "history": ck.get("history", {}) or {}, "extra": rest}


def load_checkpoint(path: str | Path) -> dict:
    """Read any affectlens checkpoint (safe: ``weights_only=True``) as a format-2 payload."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    if path.stat().st_size == 0:
        raise DataError(path, "empty file, not a checkpoint")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one line naming it, never torch's advice
        text = str(e)
        if isinstance(e, pickle.UnpicklingError) and "Unsupported global" in text:
            name = text.split("Unsupported global:", 1)[1].split()[1] if "GLOBAL" in text else "an object"
            reason = f"it holds Python objects ({name}), not plain tensors; refusing to unpickle it"
        elif isinstance(e, (pickle.UnpicklingError, EOFError, zipfile.BadZipFile)) or "zip archive" in text:
            reason = "corrupt, truncated or not a PyTorch file"
        else:
            first = (text.strip().splitlines() or [type(e).__name__])[0]
            reason = f"{type(e).__name__}: {first[:120]}"
        raise DataError(path, f"not a readable checkpoint ({reason})") from None
    if not isinstance(ck, dict) or "state_dict" not in ck:
        raise DataError(path, "not an affectlens checkpoint (no 'state_dict')")
    if ck.get("format") == FORMAT:
        return {**{k: ck.get(k, {} if k != "epoch" else 0) for k in KEYS}, **{k: ck[k] for k in ck if k not in KEYS}}
    if "config" not in ck:
        raise DataError(path, "not an affectlens checkpoint (no model config)")
    return _from_format_1(ck)


def count_parameters(model: torch.nn.Module) -> int:
    """All parameters of ``model``, trainable or frozen."""
    return sum(p.numel() for p in model.parameters())
