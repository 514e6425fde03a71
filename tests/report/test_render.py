"""Open the report in headless Chromium: every section is there and every image decodes."""
from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from affectlens.report.browser import check_images, screenshot
from affectlens.report.html import Report

pytestmark = pytest.mark.slow


def test_report_renders_with_every_image(chromium, full_report):
    path, _ = full_report
    total, bad, dom = check_images(path)
    assert total == path.read_text(encoding="utf-8").count("<img ") == 10
    assert bad == []
    headings = re.findall(r"<h2 id=\"[^\"]+\">([^<]+)</h2>", dom)
    assert headings == ["Group emotion", "Training", "Ablation", "Timeline", "Anonymization"]
    assert "confusion matrix (counts; rows = true)" in dom and "clip 2 — after" in dom


def test_image_check_catches_a_broken_image(chromium, tmp_path):
    good = np.full((8, 8, 3), 200, np.uint8)
    page = Report("broken").section("s").image(good, "good").write(tmp_path / "b.html")
    html = page.read_text(encoding="utf-8").replace(
        "</section>", '<img src="data:image/png;base64,iVBORw0KGgoAAAA=" alt="truncated"></section>', 1)
    page.write_text(html, encoding="utf-8")
    total, bad, _ = check_images(page)
    assert (total, bad) == (2, ["truncated"])


def test_screenshot_shows_the_page(chromium, full_report, tmp_path):
    png = screenshot(full_report[0], tmp_path / "shot.png", width=1000, height=1400)
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape == (1400, 1000, 3)
    assert img.std() > 20  # not a blank page: text, tables and plots are drawn
