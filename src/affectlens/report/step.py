"""What one step of ``affectlens demo`` shows. Each room's ``demo.py`` returns one; ``affectlens.demo``
runs the steps and lays their results out in ``report.html`` and ``metrics.json``."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class StepResult:
    """Headline numbers, pictures (caption, PNG) and tables of one demo step."""

    summary: str
    metrics: dict = dataclasses.field(default_factory=dict)
    figures: list = dataclasses.field(default_factory=list)  # [(caption, png_path)]
    tables: list = dataclasses.field(default_factory=list)  # [(caption, headers, rows)]
    text: str = ""
