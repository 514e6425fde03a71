"""The anonymize command's option defaults are the library's (the CLI keeps literals so that
``affectlens --help`` does not import OpenCV and onnxruntime)."""
from __future__ import annotations

import typer

from affectlens.cli import app
from affectlens.privacy.anonymize import AnonymizeConfig


def test_anonymize_cli_defaults_match_anonymize_config():
    command = typer.main.get_command(app).commands["anonymize"]
    defaults = {p.name: p.default for p in command.params}
    cfg = AnonymizeConfig()
    for name in ("method", "mask", "margin", "threshold", "detector", "det_size", "detect_every"):
        assert defaults[name] == getattr(cfg, name), name
