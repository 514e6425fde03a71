"""`spontaneity cv --report`: a self-contained HTML page with Table 1 and the error chart."""
from __future__ import annotations

import re

from typer.testing import CliRunner

from affectlens.cli import app

runner = CliRunner()


def test_cv_report_has_table_1_and_the_error_chart(tmp_path):
    syn = tmp_path / "syn"
    r = runner.invoke(app, ["synth", "spontaneity", str(syn), "--subjects", "4", "--per-subject", "4"])
    assert r.exit_code == 0, r.output
    report = tmp_path / "spontaneity.html"
    r = runner.invoke(app, ["spontaneity", "cv", str(syn / "manifest.csv"), "--folds", "2", "--seeds", "1",
                            "--epochs", "1", "--size", "tiny", "--report", str(report)])  # no --out: chart drawn anew
    assert r.exit_code == 0, r.output
    html = report.read_text()
    for title in ("Results", "Error rate per method (Table 1)", "Figures", "DiffCNN", "CompCNN-Comb-SVM",
                  "kfold", "never the best seed"):
        assert title in html, title
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 1
    assert "http://" not in html and "https://" not in html
