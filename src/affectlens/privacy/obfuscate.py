"""Stage 3 of paper 004: regenerate each face with chosen attributes flipped, then blend it back.

For a face anywhere in an image or video frame:
  1. 68 dlib landmarks inside its box (boxes from CenterFace, dlib's HOG detector or the caller);
  2. a similarity transform maps the landmarks onto the mean layout of the training crops, so the
     face is cut out exactly like a CelebA aligned crop (the geometry stage 2 learnt);
  3. stage 1 on that crop: the ellipse mask, the 40 attributes from the classifier;
  4. the chosen attributes are inverted (default Pointy_Nose, Smiling, Young, Big_Nose as in the
     paper's §3.4.1); protected attributes (Male and the attributes that define a gender
     presentation) are never changed — asking to flip one is an error;
  5. the U-Net regenerates the crop at 128 × 64; only the face ellipse (feathered) is taken from it,
     warped back with the inverse transform and alpha-blended into the original frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from affectlens.errors import AffectlensError
from affectlens.faces.landmarks import detect_boxes, ellipse_mask, landmarks
from affectlens.privacy.attributes import load_attribute_model, predict
from affectlens.privacy.masking import blur, register_method
from affectlens.privacy.options import file_stamp
from affectlens.privacy.reconstruct import build_input, load_recon_model, prepare_crops

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()
DEFAULT_FLIP = ("Pointy_Nose", "Smiling", "Young", "Big_Nose")
# "gender and those related to gender should not be changed" (§2.4.1): Male itself, facial hair and
# make-up, whose change would present a different gender. (Big_Nose and Young correlate with Male in
# CelebA too, r = 0.36 / -0.29, but the paper flips them deliberately, so the criterion is meaning.)
PROTECTED = ("Male", "5_o_Clock_Shadow", "Goatee", "Mustache", "No_Beard", "Sideburns", "Heavy_Makeup",
             "Wearing_Lipstick")


class ProtectedAttributeError(AffectlensError):
    """A request to flip an attribute that must never change."""


def flip_mask(flip: Sequence[str] | str = DEFAULT_FLIP, names: Sequence[str] = CELEBA_ATTRIBUTES,
              protected: Sequence[str] = PROTECTED) -> np.ndarray:
    """``(40,)`` uint8 XOR mask for the attributes to invert. ``flip="all"`` = every unprotected one."""
    lower = {n.lower(): i for i, n in enumerate(names)}
    prot = {p.lower() for p in protected}
    if isinstance(flip, str):
        flip = [n for n in names if n.lower() not in prot] if flip == "all" else [f for f in flip.split(",") if f]
    mask = np.zeros(len(names), np.uint8)
    for f in flip:
        key = f.strip().lower()
        if key not in lower:
            raise AffectlensError(f"unknown attribute {f!r}; choose from {', '.join(names)}")
        if key in prot:
            raise ProtectedAttributeError(f"attribute {f!r} is protected and is never changed ({', '.join(protected)})")
        mask[lower[key]] = 1
    return mask


def manipulate(attrs: np.ndarray, mask: np.ndarray, names: Sequence[str] = CELEBA_ATTRIBUTES,
               protected: Sequence[str] = PROTECTED) -> np.ndarray:
    """Invert the masked attributes of ``(..., 40)`` 0/1 vectors; protected ones are copied unchanged."""
    attrs = np.asarray(attrs, np.uint8)
    keep = np.array([n in protected for n in names])
    out = attrs ^ np.asarray(mask, np.uint8)
    out[..., keep] = attrs[..., keep]
    return out


@dataclass
class FaceResult:
    box: np.ndarray  # (4,) x1, y1, x2, y2 in the frame
    attrs_before: np.ndarray  # (40,) 0/1 from the classifier
    attrs_after: np.ndarray  # (40,) after manipulation
    crop: np.ndarray  # (H0, W0, 3) the aligned crop
    generated: np.ndarray  # (H0, W0, 3) the blended aligned crop


def feather(mask: np.ndarray, px: float) -> np.ndarray:
    """0/1 mask → float alpha in [0, 1] with a soft edge of about ``px`` pixels inside the ellipse."""
    if px <= 0:
        return mask.astype(np.float32)
    k = int(2 * round(px) + 1)
    eroded = cv2.erode(mask.astype(np.uint8), np.ones((k, k), np.uint8))
    return np.clip(cv2.GaussianBlur(eroded.astype(np.float32), (2 * k + 1, 2 * k + 1), px), 0, 1) * mask


OUTPUTS = ("blended", "generated")


class Obfuscator:
    """Regenerates faces with flipped attributes (needs the stage-1 classifier and the stage-2 U-Net).

    ``output``: ``blended`` (default) keeps the original pixels outside the face and blends the
    regenerated face in under the feathered landmark ellipse; ``generated`` is the paper's output,
    the U-Net's whole regenerated crop (its context is the network's rebuild of the original's)."""

    def __init__(self, recon, attr_model, flip: Sequence[str] | str = DEFAULT_FLIP, feather_px: float = 2.0,
                 mask_margin: float | None = None, output: str = "blended"):
        if output not in OUTPUTS:
            raise AffectlensError(f"output {output!r}: expected one of {', '.join(OUTPUTS)}")
        self.output = output
        self.recon = recon.eval()
        self.attr_model = attr_model.eval()
        self.mask = flip_mask(flip)
        self.feather_px = feather_px
        self.margin = recon.config.mask_margin if mask_margin is None else mask_margin
        tp = np.asarray(recon.config.template_points, np.float32)
        if tp.size != 136:
            raise AffectlensError("the reconstruction checkpoint has no landmark template (train it with this version)")
        self.template = tp.reshape(68, 2)
        self.crop_hw = tuple(recon.config.template_hw)

    @torch.no_grad()
    def attributes(self, crops: np.ndarray) -> np.ndarray:
        """``(n, H0, W0, 3)`` aligned crops → ``(n, 40)`` 0/1 from the classifier."""
        h, w = self.attr_model.config.image_hw
        x = np.stack([c if c.shape[:2] == (h, w) else cv2.resize(c, (w, h), interpolation=cv2.INTER_AREA) for c in crops])
        return (predict(self.attr_model, x) >= 0.5).astype(np.uint8)

    @torch.no_grad()
    def generate_crops(self, crops: np.ndarray, points: np.ndarray, attrs: np.ndarray | None = None,
                       flip: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Aligned crops + their 68 points → (blended crops, attrs before, attrs after).

        ``attrs`` default to the classifier's; ``flip`` (40,) defaults to this obfuscator's mask.
        """
        before = self.attributes(crops) if attrs is None else np.asarray(attrs, np.uint8)
        after = manipulate(before, self.mask if flip is None else flip)
        ims, masks, pts = prepare_crops(crops, points, self.recon.config.hw, self.margin)
        x, _ = build_input(ims, masks, pts, after, self.recon.config.sigma)
        gen = (self.recon(x).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)  # (n, 128, 64, 3)
        h0, w0 = crops.shape[1:3]
        out = np.empty_like(crops)
        for i in range(len(crops)):
            g = cv2.resize(gen[i], (w0, h0), interpolation=cv2.INTER_CUBIC).astype(np.float32)
            if self.output == "generated":  # the paper's: the regenerated crop as it is
                out[i] = np.clip(g, 0, 255).round().astype(np.uint8)
                continue
            alpha = feather(ellipse_mask((h0, w0), points[i], self.margin), self.feather_px)[..., None]
            out[i] = np.clip(alpha * g + (1 - alpha) * crops[i], 0, 255).round().astype(np.uint8)
        return out, before, after

    def align(self, rgb: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Warp a face onto the template → (crop, its points, 2×3 frame→crop matrix)."""
        m, _ = cv2.estimateAffinePartial2D(points.astype(np.float32), self.template, method=cv2.LMEDS)
        if m is None:
            raise AffectlensError("could not align the face to the landmark template")
        h0, w0 = self.crop_hw
        crop = cv2.warpAffine(rgb, m, (w0, h0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        pts = points @ m[:, :2].T + m[:, 2]
        return crop, pts.astype(np.float32), m

    def __call__(self, rgb: np.ndarray, boxes: np.ndarray | None = None) -> tuple[np.ndarray, list[FaceResult]]:
        """Obfuscate every face of an RGB frame → (new frame, per-face results); boxes default to dlib HOG."""
        out = np.array(rgb, np.uint8, copy=True)
        all_pts = landmarks(out, boxes)
        results = []
        for k, pts in enumerate(all_pts):
            crop, cpts, m = self.align(rgb, pts)
            gen, before, after = self.generate_crops(crop[None], cpts[None])
            minv = cv2.invertAffineTransform(m)
            h, w = out.shape[:2]
            back = cv2.warpAffine(gen[0], minv, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            alpha_crop = (np.ones(crop.shape[:2], np.float32) if self.output == "generated"
                          else feather(ellipse_mask(crop.shape[:2], cpts, self.margin), self.feather_px))
            alpha = cv2.warpAffine(alpha_crop, minv, (w, h), flags=cv2.INTER_LINEAR)[..., None]
            out = np.clip(alpha * back + (1 - alpha) * out, 0, 255).round().astype(np.uint8)
            box = np.concatenate([pts.min(axis=0), pts.max(axis=0)]) if boxes is None else np.asarray(boxes)[k]
            results.append(FaceResult(np.asarray(box, np.float32), before[0], after[0], crop, gen[0]))
        return out, results


def load_obfuscator(recon_path, attr_path, flip: Sequence[str] | str = DEFAULT_FLIP, **kw) -> Obfuscator:
    """Both trained checkpoints (``best.pt`` of train-reconstruct and train-attributes) → an Obfuscator."""
    return Obfuscator(load_recon_model(recon_path), load_attribute_model(attr_path), flip, **kw)


def as_anonymize_method(obf: Obfuscator, box_margin: float = 0.25, fallback=None):
    """``(region, mask) -> region`` for ``affectlens.privacy.anonymize``: ``region`` is the detector's
    box grown by ``box_margin`` per side; the face inside it is regenerated. If no landmarks can be
    placed (a profile, a tiny face), ``fallback`` (default: anonymize's blur) is used instead, so a
    detected face is never left as it was."""
    def method(region: np.ndarray, mask: np.ndarray) -> np.ndarray:
        h, w = region.shape[:2]
        f = box_margin / (1 + 2 * box_margin)  # where the detector's box sits inside the region
        boxes = detect_boxes(region, 1)[:1] if min(h, w) >= 40 else np.zeros((0, 4), np.float32)
        if not len(boxes):
            boxes = np.array([[w * f, h * f, w * (1 - f), h * (1 - f)]], np.float32)
        try:
            out, faces = obf(np.ascontiguousarray(region), boxes)
            if faces:
                return out
        except (AffectlensError, ValueError):
            pass
        if fallback is not None:
            return fallback(region, mask)

        return blur(region, mask)

    return method


def register_obfuscate(recon_path, attr_path, flip: Sequence[str] | str = DEFAULT_FLIP, box_margin: float = 0.25,
                       output: str = "blended") -> None:
    """Make ``method="obfuscate"`` available to ``affectlens.privacy.anonymize`` with these checkpoints
    (``output``: see ``Obfuscator``; part of the resume key with the checkpoints and the flips)."""
    obf = load_obfuscator(recon_path, attr_path, flip, output=output)
    settings = {"output": output, "reconstruct": {"path": str(Path(recon_path).resolve()), **file_stamp(recon_path)},
                "attributes": {"path": str(Path(attr_path).resolve()), **file_stamp(attr_path)},
                "flip": [n for n, m in zip(CELEBA_ATTRIBUTES, obf.mask) if m], "box_margin": box_margin}
    register_method("obfuscate", as_anonymize_method(obf, box_margin), settings)
