"""The HTML builder: correct numbers, escaped text, embedded images only, atomic writes."""
from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from PIL import Image

from affectlens.errors import DataError
from affectlens.report.html import Report, image_data_uri, write_eval_report
from tests.report.conftest import CLASSES


def _rows(page: str) -> dict[str, list[str]]:
    """First cell → the other cells, for every table row of the page."""
    out = {}
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.DOTALL):
        cells = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", tr, re.DOTALL)
        if cells:
            out.setdefault(cells[0], cells[1:])
    return out


def test_per_class_numbers_match_sklearn(full_report):
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    path, rep = full_report
    cm = np.asarray(rep["confusion_matrix"])
    y_true = np.repeat(np.arange(3), cm.sum(1))  # rebuild labels from the matrix
    y_pred = np.concatenate([np.repeat(np.arange(3), cm[i]) for i in range(3)])
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=[0, 1, 2], zero_division=0)
    rows = _rows(path.read_text(encoding="utf-8"))
    for i, name in enumerate(CLASSES):
        assert rows[name] == [f"{p[i]:.3f}", f"{r[i]:.3f}", f"{f[i]:.3f}", str(s[i])]
    assert rows["accuracy"] == [f"{accuracy_score(y_true, y_pred):.4f}"]
    assert rows["fusion"][0] == "0.700"  # ablation row kept its order and number


def test_text_is_escaped_and_nothing_is_fetched(full_report):
    page = full_report[0].read_text(encoding="utf-8")
    assert "<title>affectlens &lt;demo&gt; &amp; report</title>" in page
    assert "&lt;b&gt;not bold&lt;/b&gt;" in page and "<b>audio</b>" in page and "<code>video</code>" in page
    assert "<script" not in page.lower()
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert refs and all(r.startswith(("data:image/", "#")) for r in refs)
    assert not re.search(r"https?://|url\(", page)
    assert '<tr class="best"><td>fusion</td>' in page


def test_sections_and_images(full_report):
    page = full_report[0].read_text(encoding="utf-8")
    for anchor in ("group-emotion", "training", "ablation", "timeline", "anonymization"):
        assert f'<h2 id="{anchor}">' in page and f'href="#{anchor}"' in page
    # 2 confusion matrices + per-class bars + 2 curve plots + timeline + 2 × 2 thumbnails
    assert page.count("<img ") == 10


def test_array_images_round_trip_and_thumbnail():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    uri = image_data_uri(img)
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    np.testing.assert_array_equal(back, img)
    chw = image_data_uri(img.transpose(2, 0, 1).astype(np.float32) / 255, max_side=30)
    small = Image.open(io.BytesIO(base64.b64decode(chw.split(",", 1)[1])))
    assert small.size == (30, 20)


def test_bad_images_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.png: image not found"):
        Report("x").image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(DataError, match="notes.png: not a PNG, JPEG"):
        Report("x").image(tmp_path / "notes.png")


def test_write_is_atomic_and_readable(tmp_path):
    out = tmp_path / "deep" / "r.html"
    Report("t").section("s").text("hello").write(out)
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in out.parent.iterdir()) == ["r.html"]  # no temp file left
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


def test_write_eval_report_for_multilabel_metrics(tmp_path):
    out = write_eval_report(tmp_path / "eval.html", {"gap": 0.81234, "map": 0.4, "hit_at_1": 0.9, "n": 120},
                            history={"train_loss": [0.9, 0.5]}, notes="model `moe` on synthetic features",
                            tables={"Ensembles": [{"ensemble": "mean", "gap": 0.83}]})
    page = out.read_text(encoding="utf-8")
    rows = _rows(page)
    assert rows["gap"] == ["0.8123"] and rows["n"] == ["120"] and rows["mean"] == ["0.830"]
    assert '<h2 id="ensembles">' in page and '<h2 id="training">' in page and page.count("<img ") == 1


def test_report_option_in_an_eval_command(tmp_path):
    import typer
    from typer.testing import CliRunner

    from affectlens.metrics.classification import classification_report
    from affectlens.cli_options import REPORT_OPTION

    app = typer.Typer()

    @app.command()
    def evaluate(report: Optional[Path] = REPORT_OPTION):  # noqa: UP045 (typer reads the annotation)
        rep = classification_report([0, 1, 1, 0], [0, 1, 0, 0], ["calm", "tense"])
        if report:
            write_eval_report(report, rep, title="eval")

    res = CliRunner().invoke(app, ["--report", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    assert _rows((tmp_path / "r.html").read_text(encoding="utf-8"))["tense"] == ["1.000", "0.500", "0.667", "2"]
