"""The house rules that hold by construction: one training loop, one checkpoint format."""
from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "affectlens"


def _sources(exclude: str):
    return [p for p in SRC.rglob("*.py") if exclude not in p.relative_to(SRC).parts]


def test_no_backward_outside_the_training_engine():
    offenders = [f"{p.relative_to(SRC)}:{i}" for p in _sources("training")
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if re.search(r"\.backward\(", line)]
    assert not offenders, f"hand-written training steps outside training/: {offenders}"


def test_checkpoints_are_written_only_through_training_checkpoint():
    offenders = [f"{p.relative_to(SRC)}:{i}" for p in _sources("training")
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if re.search(r"\btorch\.save\(", line)]
    assert not offenders, f"raw torch.save outside training/: {offenders}"
