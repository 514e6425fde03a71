"""Synthetic onset/apex face pairs with posed vs spontaneous cues (paper 001, §1).

USTC-NVIE and SPOS are licensed and out of reach, so the room generates its own stand-in. Each
synthetic *subject* has identity traits (face shape, skin and background tone, eye spacing, mouth
width, brow height, a static asymmetry of the face, lighting direction, how expressive they are).
Each *sample* is an expression (happiness, surprise or sadness) of that subject rendered twice: at
onset (a trace of the action) and at apex (full intensity), with a small head movement, lighting
change and sensor noise between the two frames.

The label lives only in how the expression unfolds, as the paper's introduction describes:
  * spontaneous expressions also move the eye region (orbicularis oculi: the eyes narrow, the
    cheeks rise and crow's-feet wrinkles appear; in surprise the upper lids lift) [Ekman 1991];
  * posed expressions are driven by the mouth (and brows) and are more asymmetric left/right
    [Ekman, Hager & Friesen 1981].
The two cue distributions overlap (``difficulty`` moves them together), and the subject's static
asymmetry and traits are present in onset and apex alike, so a single apex frame is a weaker cue
than the onset → apex change.

Pairs are written already as aligned 44 × 44 grey crops (eyes where ``faces.align.align_eyes`` puts them),
so the detector + alignment step is bypassed for them. ``render_scene`` draws a large face on a
background for exercising that path.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Dict, Iterator, Tuple

import cv2
import numpy as np

from affectlens.errors import AffectlensError
from affectlens.faces.align import EYE_DIST, EYE_Y
from affectlens.files import atomic_path
from affectlens.media.image import write_image
from affectlens.scale import run_batch
from affectlens.spontaneity.data import MANIFEST_FIELDS

EXPRESSIONS = ("happiness", "surprise", "sadness")
SS = 4  # supersampling factor: draw at 4× and downsample with area averaging (sub-pixel cues)


@dataclass(frozen=True)
class Identity:
    """Per-subject traits; all lengths are fractions of the crop side."""

    skin: float
    background: float
    hair: float
    face_w: float
    face_h: float
    eye_y: float
    eye_dx: float
    eye_w: float
    eye_h: float
    brow_gap: float
    nose_len: float
    mouth_y: float
    mouth_w: float
    tilt: float          # static mouth tilt (a face's own asymmetry, present at onset too)
    light: float         # left-right lighting gradient
    expressivity: float


def sample_identity(rng: np.random.Generator) -> Identity:
    return Identity(
        skin=rng.uniform(120, 205), background=rng.uniform(25, 100), hair=rng.uniform(10, 70),
        face_w=rng.uniform(0.33, 0.40), face_h=rng.uniform(0.45, 0.52),
        eye_y=EYE_Y + rng.normal(0, 0.01), eye_dx=EYE_DIST / 2 + rng.normal(0, 0.008),
        eye_w=rng.uniform(0.065, 0.08), eye_h=rng.uniform(0.035, 0.045), brow_gap=rng.uniform(0.06, 0.09),
        nose_len=rng.uniform(0.13, 0.18), mouth_y=rng.uniform(0.72, 0.78), mouth_w=rng.uniform(0.11, 0.15),
        tilt=rng.normal(0, 0.012), light=rng.uniform(-0.25, 0.25), expressivity=rng.uniform(0.75, 1.25))


@dataclass(frozen=True)
class Action:
    """Facial action at one instant (0 = neutral). Per side: index 0 = image left, 1 = image right."""

    mouth: Tuple[float, float] = (0.0, 0.0)   # corner lift (>0 smile, <0 corners down)
    brow: Tuple[float, float] = (0.0, 0.0)    # brow raise
    eyes: float = 0.0                          # >0 narrowing + cheek raise (Duchenne); <0 lids lifted
    jaw: float = 0.0                           # mouth opening

    def scaled(self, s: float) -> "Action":
        return Action((self.mouth[0] * s, self.mouth[1] * s), (self.brow[0] * s, self.brow[1] * s),
                      self.eyes * s, self.jaw * s)


def sample_action(rng: np.random.Generator, expression: str, spontaneous: bool, intensity: float,
                  difficulty: float = 0.5) -> Action:
    """The apex action of one expression. ``difficulty`` ∈ [0, 1]: 0 separates the classes, 1 mixes them."""
    d = float(np.clip(difficulty, 0.0, 1.0))
    if spontaneous:  # symmetric, and the eye region takes part
        asym = rng.normal(0.0, 0.05 + 0.1 * d)
        eye = rng.uniform(0.5 - 0.45 * d, 1.0)
    else:  # mouth/brow driven, lopsided, little eye involvement
        asym = rng.choice([-1.0, 1.0]) * rng.uniform(0.6 - 0.5 * d, 0.8)
        eye = rng.uniform(0.0, 0.2 + 0.6 * d)
    lr = (intensity * (1 + asym), intensity * (1 - asym))
    if expression == "happiness":
        return Action(mouth=lr, eyes=eye * intensity, jaw=0.2 * intensity)
    if expression == "surprise":
        return Action(brow=lr, eyes=-eye * intensity, jaw=0.8 * intensity)
    if expression == "sadness":
        return Action(mouth=(-0.6 * lr[0], -0.6 * lr[1]), brow=(0.5 * lr[0], 0.5 * lr[1]), eyes=0.6 * eye * intensity)
    raise ValueError(f"unknown expression {expression!r}")


def _pt(x: float, y: float, s: int) -> Tuple[int, int]:
    """Fractions → integer canvas coordinates with 4 fractional bits (cv2 ``shift=4``)."""
    return int(round(x * s * 16)), int(round(y * s * 16))


def _draw_eyes(img: np.ndarray, idn: Identity, act: Action, s: int) -> None:
    for side, sgn in ((0, -1), (1, 1)):
        cx, cy = 0.5 + sgn * idn.eye_dx, idn.eye_y
        aperture = idn.eye_h * float(np.clip(1.0 - 0.65 * act.eyes, 0.2, 1.6))
        cv2.ellipse(img, _pt(cx, cy, s), _pt(idn.eye_w, aperture, s), 0, 0, 360, 235, -1, cv2.LINE_AA, 4)
        iris = min(aperture, idn.eye_h * 0.85)
        cv2.circle(img, _pt(cx, cy, s), int(iris * s * 16), 40, -1, cv2.LINE_AA, 4)
        cv2.ellipse(img, _pt(cx, cy, s), _pt(idn.eye_w, aperture, s), 0, 180, 360, 30, max(1, s // 40), cv2.LINE_AA, 4)
        # brow: raised per side; the inner end rises more in sadness-like actions (brow < 0 mouth)
        by = cy - idn.brow_gap - 0.05 * act.brow[side]
        cv2.line(img, _pt(cx - sgn * idn.eye_w * 1.2, by, s), _pt(cx + sgn * idn.eye_w * 1.2, by + 0.008, s),
                 max(10, int(idn.hair)), max(2, s // 28), cv2.LINE_AA, 4)
        if act.eyes > 0:  # cheek raise and crow's feet (Duchenne marker), strength ∝ eye action
            e = min(act.eyes, 1.5)
            shade = int(np.clip(idn.skin - 110 * e, 0, 255))
            cv2.ellipse(img, _pt(cx, cy + aperture + 0.03, s), _pt(idn.eye_w * 1.1, 0.02 + 0.02 * e, s),
                        0, 0, 180, shade, max(3, s // 30), cv2.LINE_AA, 4)
            ox = cx + sgn * idn.eye_w * 1.1
            for dy in (-0.03, 0.0, 0.03):
                cv2.line(img, _pt(ox, cy + dy, s), _pt(ox + sgn * 0.08 * e, cy + dy * 2.0, s),
                         shade, max(3, s // 30), cv2.LINE_AA, 4)


def _draw_mouth(img: np.ndarray, idn: Identity, act: Action, s: int) -> None:
    my, mw = idn.mouth_y, idn.mouth_w
    lift_l = 0.08 * act.mouth[0] - idn.tilt
    lift_r = 0.08 * act.mouth[1] + idn.tilt
    xl, xr = 0.5 - mw * (1 + 0.15 * max(act.mouth[0], 0)), 0.5 + mw * (1 + 0.15 * max(act.mouth[1], 0))
    t = np.linspace(0, 1, 24)
    # upper and lower lip lines as quadratic curves through the corners
    x = xl + (xr - xl) * t
    corner_y = my - (lift_l * (1 - t) + lift_r * t)
    sag = 0.02 * (act.mouth[0] + act.mouth[1]) / 2
    upper = corner_y + sag * 4 * t * (1 - t) * 0.5
    lower = upper + (0.01 + 0.06 * act.jaw) * 4 * t * (1 - t)
    poly = np.stack([np.r_[x, x[::-1]], np.r_[upper, lower[::-1]]], 1)
    cv2.fillPoly(img, [np.round(poly * s * 16).astype(np.int32)], 45, cv2.LINE_AA, 4)
    # nasolabial folds deepen with the corner lift on each side
    for side, (cx, lift) in enumerate(((xl, act.mouth[0]), (xr, act.mouth[1]))):
        if lift > 0:
            sgn = -1 if side == 0 else 1
            shade = int(np.clip(idn.skin - 60 * lift, 0, 255))
            cv2.line(img, _pt(0.5 + sgn * 0.06, idn.eye_y + idn.nose_len, s), _pt(cx + sgn * 0.02, my - 0.01, s),
                     shade, max(2, s // 45), cv2.LINE_AA, 4)


def render_face(idn: Identity, act: Action, size: int = 44, pose: Tuple[float, float, float, float] = (0, 0, 0, 1),
                gain: float = 1.0, noise: float = 2.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """One grey face crop (size × size uint8). ``pose`` = (dx, dy, degrees, scale), shifts in fractions."""
    s = size * SS
    img = np.full((s, s), idn.background, np.float32)
    canvas = img.astype(np.uint8)
    cv2.ellipse(canvas, _pt(0.5, 0.47, s), _pt(idn.face_w * 1.08, idn.face_h * 1.02, s), 0, 180, 360,
                int(idn.hair), -1, cv2.LINE_AA, 4)
    cv2.ellipse(canvas, _pt(0.5, 0.55, s), _pt(idn.face_w, idn.face_h, s), 0, 0, 360, int(idn.skin), -1, cv2.LINE_AA, 4)
    _draw_eyes(canvas, idn, act, s)
    nose_top, nose_bot = idn.eye_y + 0.03, idn.eye_y + idn.nose_len
    shade = int(idn.skin * 0.7)
    cv2.line(canvas, _pt(0.5, nose_top, s), _pt(0.505, nose_bot, s), shade, max(1, s // 60), cv2.LINE_AA, 4)
    cv2.ellipse(canvas, _pt(0.5, nose_bot, s), _pt(0.035, 0.012, s), 0, 0, 180, shade, max(1, s // 60), cv2.LINE_AA, 4)
    _draw_mouth(canvas, idn, act, s)
    img = canvas.astype(np.float32)
    ramp = 1.0 + idn.light * np.linspace(-1, 1, s, dtype=np.float32)[None, :]
    img *= ramp * gain
    dx, dy, deg, scale = pose
    m = cv2.getRotationMatrix2D((s / 2, s / 2), deg, scale)
    m[:, 2] += (dx * s, dy * s)
    img = cv2.warpAffine(img, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    if noise > 0:
        img = img + (rng or np.random.default_rng()).normal(0, noise, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _pose(rng: np.random.Generator) -> Tuple[float, float, float, float]:
    return (rng.normal(0, 0.012), rng.normal(0, 0.012), rng.normal(0, 2.0), rng.normal(1.0, 0.02))


def generate_pairs(n_subjects: int = 40, per_subject: int = 8, seed: int = 0, difficulty: float = 0.5,
                   size: int = 44, expressions: Tuple[str, ...] = EXPRESSIONS) -> Iterator[Dict]:
    """Yield one dict per sample: subject, id, label ("posed"/"spontaneous"), expression, onset, apex.

    Each subject gets ``per_subject`` samples, half posed and half spontaneous (odd counts: one more
    spontaneous), expressions drawn uniformly.
    """
    rng = np.random.default_rng(seed)
    for si in range(n_subjects):
        idn = sample_identity(rng)
        subject = f"S{si + 1:03d}"
        for k in range(per_subject):
            spontaneous = k % 2 == 1 if per_subject % 2 == 0 else k % 2 == 0
            expr = expressions[int(rng.integers(len(expressions)))]
            intensity = idn.expressivity * rng.uniform(0.6, 1.0)
            apex_act = sample_action(rng, expr, spontaneous, intensity, difficulty)
            onset_act = apex_act.scaled(rng.uniform(0.0, 0.15))
            gain = rng.normal(1.0, 0.04)
            onset = render_face(idn, onset_act, size, _pose(rng), 1.0, rng=rng)
            apex = render_face(idn, apex_act, size, _pose(rng), gain, rng=rng)
            label = "spontaneous" if spontaneous else "posed"
            yield {"subject": subject, "id": f"{subject}_{k:02d}_{expr}", "label": label,
                   "expression": expr, "onset": onset, "apex": apex}


def synthetic_arrays(n_subjects: int = 24, per_subject: int = 8, seed: int = 0, difficulty: float = 0.5,
                     expressions: Tuple[str, ...] = EXPRESSIONS):
    """In memory: onset, apex (N, 44, 44) uint8, labels (N,) int (1 = spontaneous), subjects (N,) str."""
    rows = list(generate_pairs(n_subjects, per_subject, seed, difficulty, expressions=expressions))
    onset = np.stack([r["onset"] for r in rows])
    apex = np.stack([r["apex"] for r in rows])
    labels = np.array([r["label"] == "spontaneous" for r in rows], dtype=np.int64)
    subjects = np.array([r["subject"] for r in rows])
    return onset, apex, labels, subjects


def write_synthetic(out: str | Path, n_subjects: int = 40, per_subject: int = 8, seed: int = 0,
                    difficulty: float = 0.5, progress: bool = True) -> Path:
    """Write ``out/<posed|spontaneous>/<subject>/<id>/{onset,apex}.png`` (the USTC-NVIE-style tree that
    ``data.scan_ustc_nvie`` reads) and ``out/manifest.csv``; returns the manifest path.

    The pairs are written through the one batch runner (:func:`affectlens.scale.run_batch`): a pair
    already on disk is skipped, each image is written atomically (the apex last)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = [SynthPair(r) for r in generate_pairs(n_subjects, per_subject, seed, difficulty)]
    res = run_batch(pairs, partial(write_pair, out=out), lambda pr: pair_folder(pr, out) / "apex.png",
                    description="rendering pairs", progress=progress)
    if res.failed:
        raise AffectlensError(res.failed[0][1])
    rows = []
    for pr in pairs:
        rel = pair_folder(pr, out).relative_to(out).as_posix()
        r = pr.row
        rows.append({"subject": r["subject"], "onset": f"{rel}/onset.png", "apex": f"{rel}/apex.png",
                     "label": r["label"], "id": r["id"], "expression": r["expression"]})
    manifest = out / "manifest.csv"
    with atomic_path(manifest) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(MANIFEST_FIELDS) + ["id", "expression"])
        w.writeheader()
        w.writerows(rows)
    return manifest


@dataclass(frozen=True)
class SynthPair:
    """One rendered pair (a row of ``generate_pairs``), named by its id in batch reports."""

    row: dict

    def __str__(self) -> str:
        return f"pair {self.row['id']}"


def pair_folder(pair: SynthPair, out: Path) -> Path:
    return Path(out) / pair.row["label"] / pair.row["subject"] / pair.row["id"]


def write_pair(pair: SynthPair, out: Path) -> Path:
    """Write one pair's onset and apex crops (the apex last: the batch runner's output)."""
    folder = pair_folder(pair, out)
    for name in ("onset", "apex"):
        write_image(folder / f"{name}.png", pair.row[name])
    return folder / "apex.png"


def render_scene(idn: Identity, act: Action, size: int = 320, face_frac: float = 0.55,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """A large RGB picture (size × size × 3 uint8) with the face in the middle, for the detector path."""
    face_px = int(size * face_frac)
    face = render_face(idn, act, face_px, noise=0.0, rng=rng)
    scene = np.full((size, size), idn.background, np.uint8)
    o = (size - face_px) // 2
    scene[o:o + face_px, o:o + face_px] = face
    return np.repeat(scene[..., None], 3, axis=2)
