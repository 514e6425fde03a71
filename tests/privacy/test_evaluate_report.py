"""`privacy evaluate --report`: the method table and the sample grid in one self-contained HTML page;
the hardware options reach the recipe (its recogniser trains through the engine).

The real evaluation needs CelebA and two trained checkpoints; here the recipe is replaced by one
that writes what it writes (metrics.json, table.md, samples.png) for tiny synthetic "faces", so
the test covers the CLI wiring and the report, not the attack.
"""
from __future__ import annotations

import re

import numpy as np
from typer.testing import CliRunner

from affectlens.cli import app

runner = CliRunner()


SEEN = {}


def _fake_evaluate(cfg, log=print, hardware=None, resume=True):
    from pathlib import Path

    from affectlens.privacy import evaluate as E
    from affectlens.files import write_json

    SEEN.update(hardware=hardware, resume=resume)
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (3, 24, 20, 3), dtype=np.uint8)
    variants = {"original": face, "blur": face // 2, "obfuscated (4 attrs)": face[:, ::-1]}
    rows = {name: {key: float(rng.random()) for key, _ in E.COLUMNS} for name in variants}
    rows["original"]["flips_realised"] = float("nan")
    metrics = {"methods": rows, "n_probes": 3, "n_identities": 2, "expression_model": "toy",
               "recognizer": {"n_train": 8, "n_test": 4, "paper_original": 0.6, "paper_obfuscated_4": 0.3667}}
    out = Path(cfg.out)
    write_json(out / "metrics.json", metrics)
    (out / "table.md").write_text(E.markdown_table(rows), encoding="utf-8")
    E.samples_png(variants, out / "samples.png", n=3)
    return metrics


def test_evaluate_report_has_methods_table_and_samples(tmp_path, monkeypatch):
    monkeypatch.setattr("affectlens.privacy.evaluate.evaluate_obfuscation", _fake_evaluate)
    report = tmp_path / "privacy.html"
    r = runner.invoke(app, ["privacy", "evaluate", "--out", str(tmp_path / "ev"), "--report", str(report),
                            "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--no-resume"])
    assert r.exit_code == 0, r.output
    html = report.read_text()
    for title in ("Results", "Methods", "Figures", "dlib rank-1", "SSIM outside face", "obfuscated (4 attrs)",
                  "probe photos"):
        assert title in html, title
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 1
    assert "http://" not in html and "https://" not in html
    hw = SEEN["hardware"].trainer_kwargs()  # the recogniser trains where the options say
    assert (hw["accelerator"], hw["devices"], hw["strategy"], SEEN["resume"]) == ("cpu", 2, "ddp", False)
