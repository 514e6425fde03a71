"""Thumbnail grids as PNG (for reports built from figure files, e.g. the demo's steps)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from affectlens.report.plots import before_after_png, image_grid_png


def test_before_after_png_draws_every_pair(tmp_path):
    frame = np.zeros((60, 80, 3), np.uint8)
    frame[:, :40] = (255, 0, 0)  # left half red
    anon = np.full((60, 80, 3), 128, np.uint8)
    png = before_after_png([(frame, anon, "clip 1"), (frame.transpose(2, 0, 1), anon, "clip 2")], tmp_path / "ba.png")
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert img.shape[1] > img.shape[0]  # four cells in one row
    red = (img[..., 0] > 200) & (img[..., 1] < 60) & (img[..., 2] < 60)
    grey = (abs(img - 128) < 6).all(-1)
    assert red.sum() > 500 and grey.sum() > 1000  # both the before and the after images are drawn


def test_image_grid_wraps_rows(tmp_path):
    tiles = [np.full((20, 20), v, np.uint8) for v in (0, 80, 160, 240, 255)]
    png = image_grid_png(tiles, tmp_path / "g.png", captions=list("abcde"), columns=2, title="grid")
    w, h = Image.open(png).size
    assert h > w  # 3 rows of 2
