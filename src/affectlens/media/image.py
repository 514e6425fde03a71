"""Images: the one reader (any bit depth or colour model to upright RGB ``uint8``, with a pixel
limit checked before decoding), the one writer (atomic), and the one list of media extensions.

``MAX_PIXELS`` (50 megapixels, e.g. 8660 × 5773) bounds what ``read_image`` decodes, and so what
a photo costs downstream: ``anonymize`` runs CenterFace's pyramid at full size, about 200 MB of
memory per megapixel (measured peaks: 2.5 GB for a 12 MP photo, 9.9 GB for 50 MP), where a
12000 × 12000 PNG (144 MP) grew past 20 GB until the kernel killed it. Photos from today's
cameras (up to 45 MP) pass. The size comes from the file's header (Pillow reads only the header
until asked for pixels), so a huge image is refused before any of it is decoded.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from affectlens.errors import MediaError
from affectlens.files import atomic_path

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"})
VIDEO_EXTS = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts"})
MAX_PIXELS = 50_000_000


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB as a person sees the file: EXIF orientation applied; grey, palette,
    CMYK and alpha images converted to RGB (alpha dropped); 16-bit samples scaled to 8 bits.

    Raises ``MediaError`` naming the file for a missing, empty, unreadable, truncated or
    over-``max_pixels`` image (the last one before anything is decoded).
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "is a folder, not an image" if path.is_dir() else "file not found")
    if path.stat().st_size == 0:
        raise MediaError(path, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies
            with Image.open(path) as im:  # reads the header only
                w, h = im.size
                if w * h > max_pixels:
                    raise MediaError(path, f"image is {w}×{h} ({w * h / 1e6:.0f} megapixels), over the limit of "
                                           f"{max_pixels / 1e6:.0f} megapixels (affectlens.media.image.MAX_PIXELS)")
                im.load()
                return _to_rgb8(ImageOps.exif_transpose(im))
    except Image.DecompressionBombError:  # Pillow's own limit (twice its default) is far above ours
        raise MediaError(path, f"image is over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels, past the limit "
                               f"of {max_pixels / 1e6:.0f} (affectlens.media.image.MAX_PIXELS)") from None
    except UnidentifiedImageError:
        raise MediaError(path, "not a readable image (unknown format or not an image)") from None
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's ways of saying truncated or corrupt
        raise MediaError(path, f"corrupt or truncated image ({e})") from None


def read_grey(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """``(H, W)`` uint8 grey: ``read_image`` (same checks, same one-line errors), then RGB → grey."""
    rgb = read_image(path, max_pixels)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _to_rgb8(im) -> np.ndarray:
    """A decoded Pillow image as (H, W, 3) uint8 RGB. Pillow's own ``convert`` clips 16-bit grey to
    255 instead of scaling it, so those modes are scaled here (by 1/256, as OpenCV does)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        grey = np.asarray(im)
        grey = (np.clip(grey, 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)  # (H, W)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy()


def write_image(path: str | Path, rgb: np.ndarray) -> Path:
    """Write ``(H, W, 3)`` uint8 RGB or ``(H, W)`` grey atomically, in the format of ``path``'s
    extension (one of ``IMAGE_EXTS``); metadata such as EXIF/GPS is not carried over."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_EXTS:
        raise MediaError(path, f"cannot write an image as {path.suffix or 'a file without extension'!r}: "
                               f"choose one of {', '.join(sorted(IMAGE_EXTS))}")
    ok, buf = cv2.imencode(path.suffix.lower(), rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise MediaError(path, f"cannot encode the image as {path.suffix!r}")
    with atomic_path(path) as tmp:
        buf.tofile(str(tmp))
    return path
