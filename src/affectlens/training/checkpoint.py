"""Checkpoints are a plain ``state_dict`` plus a JSON-able config, loadable with ``weights_only=True``."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from affectlens.errors import DataError
from affectlens.utils import atomic_path


def save_checkpoint(path: str | Path, model, config: Any, **extra: Any) -> Path:
    """Write ``{"state_dict", "config", **extra}`` atomically; ``config`` may be a dataclass or dict.

    ``extra`` must hold only tensors and plain Python values (numbers, strings, lists, dicts).
    """
    import torch

    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    payload = {"state_dict": model.state_dict(), "config": cfg, **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint written by ``save_checkpoint`` (safe: ``weights_only=True``)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle / zip errors: report the file, not a traceback
        raise DataError(path, f"not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(payload, dict) or "state_dict" not in payload or "config" not in payload:
        raise DataError(path, "not an affectlens checkpoint (needs 'state_dict' and 'config')")
    return payload
