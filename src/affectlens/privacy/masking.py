"""Masking faces in one frame: each box (grown by a margin) is replaced by a *method*'s output,
blended in under an ellipse or box mask, in an RGB picture (``anonymize_frame``) or in place in a
decoded 4:2:0 frame's own Y, U and V planes (``anonymize_planes``), where only the faces' regions
are touched and no full-size RGB frame or copy is made.

A method is ``(region, mask) -> region``: ``region`` the face's RGB crop ``(h, w, 3)`` uint8, ``mask``
its weight ``(h, w)`` float32 in [0, 1]. The named ones (``blur``, ``pixelate``, ``solid`` and
whatever ``register_method`` adds, such as ``obfuscate``) live here too, in ``METHODS``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import cv2
import numpy as np

from affectlens.errors import AffectlensError

Method = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (region (h, w, 3) uint8, mask (h, w) f32) -> (h, w, 3)
MaskShape = Literal["ellipse", "box"]


def expand_box(box: np.ndarray, margin: float, w: int, h: int) -> tuple[int, int, int, int]:
    """Grow ``box`` by ``margin`` of its size on each side; integer pixel bounds clipped to the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    return (max(0, int(np.floor(x1 - mx))), max(0, int(np.floor(y1 - my))),
            min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my))))


def region_mask(shape: MaskShape, box: np.ndarray, margin: float, bounds: tuple[int, int, int, int]) -> np.ndarray:
    """Mask weight (h, w) for the crop ``bounds``: an ellipse through the expanded box (it may be
    cut by the image edge) or the whole crop."""
    x1, y1, x2, y2 = bounds
    if shape == "box":
        return np.ones((y2 - y1, x2 - x1), np.float32)
    bx1, by1, bx2, by2 = (float(v) for v in box)
    mx, my = (bx2 - bx1) * margin, (by2 - by1) * margin
    cx, cy = (bx1 + bx2) / 2 - x1, (by1 + by2) / 2 - y1  # centre in crop coordinates
    ax, ay = (bx2 - bx1) / 2 + mx, (by2 - by1) / 2 + my
    dx = ((np.arange(x2 - x1, dtype=np.float32) + 0.5 - cx) / max(ax, 1)) ** 2  # (w,)
    dy = ((np.arange(y2 - y1, dtype=np.float32) + 0.5 - cy) / max(ay, 1)) ** 2  # (h,)
    r = dy[:, None] + dx[None, :]  # (h, w) float32, worked on in place below
    np.sqrt(r, out=r)
    edge = np.float32(2.0 / max(min(ax, ay), 1))  # ~2-px soft edge, always outside the ellipse (r > 1)
    r *= -1 / edge  # weight = (1 + edge - r) / edge, clipped to [0, 1]
    r += (1 + edge) / edge
    return np.clip(r, 0, 1, out=r)


def anonymize_frame(rgb: np.ndarray, boxes: np.ndarray, method: Method, mask: MaskShape = "ellipse",
                    margin: float = 0.25) -> np.ndarray:
    """Return a copy of ``rgb`` with every box (k, 4) replaced by ``method`` under its mask."""
    out = rgb.copy()
    h, w = rgb.shape[:2]
    for box in np.asarray(boxes, np.float32).reshape(-1, 4):
        x1, y1, x2, y2 = expand_box(box, margin, w, h)
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        region = out[y1:y2, x1:x2]
        weight = region_mask(mask, box, margin, (x1, y1, x2, y2))
        repl = np.asarray(method(region, weight), np.uint8)
        if mask == "box":
            region[:] = repl
        else:  # (repl * w + region * (1 - w)) in one pass of OpenCV
            out[y1:y2, x1:x2] = cv2.blendLinear(repl, np.ascontiguousarray(region), weight, 1.0 - weight)
    return out


def _even_bounds(bounds: tuple[int, int, int, int], w: int, h: int) -> tuple[int, int, int, int]:
    """``bounds`` grown outward to even coordinates (yuv420p chroma covers 2×2 pixels)."""
    x1, y1, x2, y2 = bounds
    return x1 & ~1, y1 & ~1, min(w, x2 + (x2 & 1)), min(h, y2 + (y2 & 1))


def anonymize_yuv420p(yuv: np.ndarray, boxes: np.ndarray, method: Method, mask: MaskShape = "ellipse",
                      margin: float = 0.25) -> np.ndarray:
    """Mask every box (k, 4) in place in a packed yuv420p picture and return it: ``yuv`` is
    ``(H * 3 / 2, W)`` uint8 in PyAV's ``VideoFrame.to_ndarray()`` layout (the Y plane, then U, then
    V, each contiguous). See ``anonymize_planes``."""
    h_all, w_all = yuv.shape[0] * 2 // 3, yuv.shape[1]
    if (yuv.dtype != np.uint8 or yuv.ndim != 2 or h_all * 3 // 2 != yuv.shape[0] or h_all % 2 or w_all % 2
            or not yuv.flags.c_contiguous):
        raise ValueError(f"expected a contiguous yuv420p picture (H*3/2, W) uint8 with even H and W, "
                         f"got {yuv.shape} {yuv.dtype}")
    n = h_all * w_all
    flat = yuv.reshape(-1)  # a view: yuv is contiguous
    anonymize_planes(yuv[:h_all], flat[n:n + n // 4].reshape(h_all // 2, w_all // 2),
                     flat[n + n // 4:].reshape(h_all // 2, w_all // 2), boxes, method, mask, margin)
    return yuv


def _blend(view: np.ndarray, method: Method, weight: np.ndarray, inverse: np.ndarray | None, **kw) -> None:
    """``view`` ← method(view) blended by ``weight`` (``inverse`` = 1 - weight; None for a full box)."""
    src = np.ascontiguousarray(view)
    out = np.asarray(method(src, weight, **kw), np.uint8)
    if inverse is None:
        view[:] = out
    else:
        cv2.blendLinear(out, src, weight, inverse, dst=view)


def anonymize_planes(y: np.ndarray, u: np.ndarray, v: np.ndarray, boxes: np.ndarray, method: Method,
                     mask: MaskShape = "ellipse", margin: float = 0.25) -> None:
    """Mask every box (k, 4) in place in a 4:2:0 picture given as its planes: ``y`` (H, W), ``u`` and
    ``v`` (H/2, W/2) uint8, each may be a strided view (``media.writable_planes`` of a decoded frame).

    Only each face's region is touched. A ``planar`` method (a linear filter such as ``blur``) runs
    on the Y crop ``anonymize_frame`` would use and on the U and V crops as they are (``step=2``);
    any other method gets the region converted to RGB (BT.601 video range, OpenCV), sees the same
    crop and mask as in ``anonymize_frame``, and its result is converted back. Either way the
    replacement is blended in by the mask on Y and (with the mask averaged over each 2×2 block) on U
    and V, so pixels outside the mask keep their bytes exactly.
    """
    h_all, w_all = y.shape
    planar = getattr(method, "planar", False)
    for box in np.asarray(boxes, np.float32).reshape(-1, 4):
        bounds = expand_box(box, margin, w_all, h_all)
        bx1, by1, bx2, by2 = bounds
        if bx2 - bx1 < 1 or by2 - by1 < 1:
            continue
        x1, y1, x2, y2 = _even_bounds(bounds, w_all, h_all)
        h, w = y2 - y1, x2 - x1
        inner = (slice(by1 - y1, by2 - y1), slice(bx1 - x1, bx2 - x1))  # the crop anonymize_frame uses
        w_inner = region_mask(mask, box, margin, bounds)
        if (x1, y1, x2, y2) == bounds:
            weight = w_inner
        else:
            weight = np.zeros((h, w), np.float32)
            weight[inner] = w_inner
        wc = cv2.resize(weight, (w // 2, h // 2), interpolation=cv2.INTER_AREA)  # mean of each 2×2 block
        chroma = [p[y1 // 2:y2 // 2, x1 // 2:x2 // 2] for p in (u, v)]
        if planar:  # no colour conversion: filter Y, U and V as they are
            box_mask = mask == "box"  # every Y weight is 1, and every U/V weight too unless bounds grew
            _blend(y[by1:by2, bx1:bx2], method, w_inner, None if box_mask else 1.0 - w_inner)
            inverse = None if box_mask and weight is w_inner else 1.0 - wc
            for view in chroma:
                _blend(view, method, wc, inverse, step=2)
            continue
        crops = (y[y1:y2, x1:x2], *chroma)
        i420 = np.concatenate([c.reshape(-1) for c in crops]).reshape(h * 3 // 2, w)
        rgb = cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)  # (h, w, 3)
        rgb[inner] = np.asarray(method(rgb[inner], w_inner), np.uint8)
        new = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).reshape(-1)
        q = h * w // 4
        cv2.blendLinear(new[:h * w].reshape(h, w), np.ascontiguousarray(crops[0]), weight, 1.0 - weight, dst=crops[0])
        inverse = 1.0 - wc
        for plane, part in ((crops[1], new[h * w:h * w + q]), (crops[2], new[h * w + q:])):
            cv2.blendLinear(part.reshape(h // 2, w // 2), np.ascontiguousarray(plane), wc, inverse, dst=plane)


# ---------------------------------------------------------------- methods

def cell_means(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` averaged over a ``size`` = (columns, rows) grid of equal whole-pixel cells. The
    cells are as large as fit; the few pixels left over (under one cell per side) are left out
    evenly at the edges. OpenCV's area filter is 7-9 times faster at whole ratios than at the
    fractional ones of a plain area resize (face crops of 190x226 px: 14 vs 110 us)."""
    (h, w), (sw, sh) = image.shape[:2], size
    if not (1 <= sw <= w and 1 <= sh <= h):
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    fw, fh = sw * (w // sw), sh * (h // sh)
    x0, y0 = (w - fw) // 2, (h - fh) // 2
    return cv2.resize(image[y0:y0 + fh, x0:x0 + fw], size, interpolation=cv2.INTER_AREA)


def blur(region: np.ndarray, mask: np.ndarray, step: int = 1) -> np.ndarray:
    """Heavy blur: average down to 1/16 of the face size, Gaussian there (sigma 3 cells, about a
    fifth of the face at full size), scale back up. Weaker blurs (1/12, sigma 1) still let dlib's
    face recogniser re-identify 4 of 16 faces in bench/anonymize_privacy.py; this one none.
    ``step``: frame pixels per pixel of ``region`` (2 for a subsampled chroma plane), so that every
    plane is averaged over the same cells."""
    h, w = region.shape[:2]
    div = 16 // step
    small = cell_means(region, (max(2, w // div), max(2, h // div)))
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=3.0, borderType=cv2.BORDER_REPLICATE)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


blur.planar = True  # linear: run on Y, U and V (with ``step``) it equals running it on RGB


def pixelate(region: np.ndarray, mask: np.ndarray, cells: int = 8) -> np.ndarray:
    """Mosaic of about ``cells`` blocks across the longer side."""
    h, w = region.shape[:2]
    block = max(1, max(h, w) // cells)
    small = cell_means(region, (max(1, w // block), max(1, h // block)))
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def solid(region: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Black fill."""
    return np.zeros_like(region)


METHODS: dict[str, Method] = {"blur": blur, "pixelate": pixelate, "solid": solid}
METHOD_SETTINGS: dict[str, dict] = {}  # what shapes a registered method's output beyond its name


def register_method(name: str, fn: Method, settings: dict | None = None) -> None:
    """Add an anonymization method (e.g. ``obfuscate`` from ``affectlens.privacy.obfuscate``).
    ``settings`` (JSON-able: its models' files, its options) go into every sidecar it makes and
    into the resume key, so an output made with other models or options is redone, not kept."""
    METHODS[name] = fn
    METHOD_SETTINGS[name] = dict(settings or {})


def method_name(method: str | Method) -> str:
    """A method given as a value: its registered name, or a function, which is registered under its
    ``__name__`` (so ``anonymize(..., method=my_fn)`` works from Python without the CLI)."""
    if isinstance(method, str):
        return method
    if not callable(method):
        raise AffectlensError(f"method {method!r}: expected a name or a function (region, mask) -> region")
    name = getattr(method, "__name__", type(method).__name__)
    if METHODS.get(name) is not method:
        register_method(name, method, getattr(method, "settings", None))
    return name


def get_method(name: str) -> Method:
    """The method registered as ``name``: a built-in one or one added by ``register_method`` (how
    ``obfuscate`` plugs in, with its checkpoints: ``privacy.obfuscate.register_obfuscate``)."""
    if name not in METHODS:
        raise AffectlensError(f"unknown anonymization method {name!r}: choose from {', '.join(sorted(METHODS))}")
    return METHODS[name]
