"""Expression prediction on images, folders and videos (paper 002, steps 1–4).

Faces come from :mod:`affectlens.faces` (CenterFace by default, Haar as in the paper). Each face
is aligned (rotated so the eyes are level when the detector gives landmarks), cropped to a square
around its box, turned grey and resized to 48×48 — the FER2013 framing — then classified.
A video is split into ``n`` frames at ``t_i = (i + 0.5)·D/n`` (the paper's step 1a); faces are
linked across those frames into tracks, and the CNN-BiLSTM also reads each track's crops as one
sequence (``ExpressionNet.forward_video``).

Output: one row per face per frame (CSV and JSON), per-track sequence predictions for videos,
and on request an annotated copy (image, or video with the source's timing and audio).
"""
from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from affectlens.errors import AffectlensError, DataError
from affectlens.expression import model as M
from affectlens.expression.data import CLASSES, FERPLUS_CLASSES, SIDE
from affectlens.faces.align import align_box, to_grey
from affectlens.faces.detect import PHOTO_SCALES, detect_faces
from affectlens.faces.track import TrackerConfig, link_ids
from affectlens.files import atomic_path, write_json
from affectlens.media import frame_times, probe, sample_frames
from affectlens.media.image import IMAGE_EXTS, VIDEO_EXTS, read_image, write_image
from affectlens.media.pipeline import transform_video
from affectlens.scale import check_output, run_batch
from affectlens.training import load_checkpoint

WEIGHTS_DIR = Path(__file__).parent / "weights"
# The shipped models, one per label set: FER+ (8 classes, trained on the ten annotators' votes; the
# default) and FER2013 (7 classes, its single labels). The two sets disagree on a third of the
# images, so each has its own model; docs/expression.md says how each was trained.
SHIPPED = {"ferplus": WEIGHTS_DIR / "cnn_bilstm_ferplus.pt", "fer2013": WEIGHTS_DIR / "cnn_bilstm_fer2013.pt"}
LABEL_SETS = tuple(SHIPPED)
DEFAULT_LABEL_SET = "ferplus"
DEFAULT_WEIGHTS = SHIPPED[DEFAULT_LABEL_SET]


def class_names(num_classes: int) -> tuple[str, ...]:
    """The class names of a 7-class (FER2013) or 8-class (FER+) model."""
    return {len(CLASSES): CLASSES, len(FERPLUS_CLASSES): FERPLUS_CLASSES}[num_classes]


def label_set_of(num_classes: int) -> str:
    return "ferplus" if num_classes == len(FERPLUS_CLASSES) else "fer2013"


def load_model(path: str | Path | None = None, label_set: str = DEFAULT_LABEL_SET) -> M.ExpressionNet | M.ExpressionEnsemble:
    """The net (or ensemble, see ``recipe.combine``) in a checkpoint; default: the shipped model of ``label_set``."""
    if label_set not in SHIPPED:
        raise AffectlensError(f"unknown label set {label_set!r}: choose {' or '.join(LABEL_SETS)}")
    path = Path(path or SHIPPED[label_set])
    return model_from_checkpoint(load_checkpoint(path), path)


def model_from_checkpoint(ck: dict, path: str | Path) -> M.ExpressionNet | M.ExpressionEnsemble:
    """The net or ensemble held by ``ck``, a checkpoint already read from ``path`` (named in errors)."""
    extra = ck.get("extra") or {}
    config = ck.get("model") or ck.get("config") or {}  # format 2 names the model config "model"
    members = int(extra.get("members", ck.get("members", 0)) or 0)
    try:
        if members:  # older ensembles hold one config for all members
            configs = extra.get("member_configs") or ck.get("member_configs") or [config] * members
            net = M.ExpressionEnsemble([M.ExpressionConfig(**c) for c in configs])
        else:
            net = M.build_model(M.ExpressionConfig(**config))
        net.load_state_dict(ck["state_dict"])
    except (TypeError, ValueError, KeyError, RuntimeError) as e:  # another room's net, or a damaged file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(path, f"not an expression checkpoint ({first[:160]})") from None
    if net.cfg.num_classes not in (len(CLASSES), len(FERPLUS_CLASSES)):
        raise DataError(path, f"predicts {net.cfg.num_classes} classes; an expression model predicts "
                              f"FER2013's {len(CLASSES)} or FER+'s {len(FERPLUS_CLASSES)}")
    return net.eval()


# --------------------------------------------------------------------------- model input and TTA

def fit_to_model(images: torch.Tensor, side: int) -> torch.Tensor:
    """uint8 ``(B, 1, 48, 48)`` → the model's input side by a centre crop (or resize when smaller)."""
    h = images.shape[-1]
    if h == side:
        return images
    if side < h and side >= h * 0.8:
        o = (h - side) // 2
        return images[..., o:o + side, o:o + side]
    return F.interpolate(images.float(), size=(side, side), mode="bilinear", align_corners=False).round().clamp(0, 255).to(torch.uint8)


def tta_views(images: torch.Tensor, side: int, mode: str) -> list[torch.Tensor]:
    """uint8 ``(B, 1, 48, 48)`` → list of uint8 views ``(B, 1, S, S)`` whose softmaxes are averaged.

    ``none``: centre crop; ``flip``: centre crop and its mirror; ``tencrop``: four corners and the
    centre, each also mirrored (the usual FER2013 ten-crop).
    """
    if mode not in ("none", "flip", "tencrop"):
        raise ValueError(f"tta must be none, flip or tencrop, got {mode!r}")
    centre = fit_to_model(images, side)
    if mode == "none":
        return [centre]
    if mode == "flip" or images.shape[-1] <= side:
        return [centre, centre.flip(-1)]
    h = images.shape[-1]
    d = h - side
    crops = [images[..., y:y + side, x:x + side] for y, x in ((0, 0), (0, d), (d, 0), (d, d))] + [centre]
    return crops + [c.flip(-1) for c in crops]


@torch.no_grad()
def predict_proba(model: M.ExpressionNet, images: np.ndarray | torch.Tensor, tta: str = "none",
                  batch_size: int = 256) -> np.ndarray:
    """uint8 grey faces ``(N, 48, 48)`` or ``(N, 1, 48, 48)`` → class probabilities ``(N, 7)``."""
    model.eval()
    x = torch.as_tensor(np.asarray(images))
    if x.ndim == 3:
        x = x[:, None]  # (N, 1, 48, 48)
    out = []
    for i in range(0, len(x), batch_size):
        views = tta_views(x[i:i + batch_size], model.cfg.image_size, tta)
        probs = sum(F.softmax(model(M.normalise(v, model.cfg)), dim=1) for v in views) / len(views)
        out.append(probs)
    return torch.cat(out).numpy() if out else np.zeros((0, model.cfg.num_classes), np.float32)


@dataclass
class FaceResult:
    box: np.ndarray          # (4,) x1, y1, x2, y2 in image pixels
    score: float             # detector confidence
    probs: np.ndarray        # (K,) class probabilities (K = 8 for FER+, 7 for FER2013)
    crop: np.ndarray         # (48, 48) uint8 aligned grey face
    track: int = -1

    @property
    def label(self) -> str:
        return class_names(len(self.probs))[int(self.probs.argmax())]


class ExpressionPredictor:
    """Detector + aligner + classifier. ``tta``: ``none`` | ``flip`` | ``tencrop`` (see ``tta_views``).

    ``weights`` (a checkpoint) wins over ``label_set`` (which shipped model); ``classes``,
    ``label_set`` and ``model_name`` say what the loaded model predicts and where it came from."""

    def __init__(self, weights: str | Path | None = None, detector: str = "centerface",
                 threshold: float = 0.5, tta: str = "flip", margin: float = 1.15,
                 label_set: str = DEFAULT_LABEL_SET):
        self.model = load_model(weights, label_set)
        self.classes = class_names(self.model.cfg.num_classes)
        self.label_set = label_set_of(self.model.cfg.num_classes)
        self.detector_name, self.threshold, self.tta, self.margin = detector, threshold, tta, margin
        self.model_name = Path(weights).name if weights else f"{SHIPPED[label_set].name} (shipped)"

    def classify(self, faces: np.ndarray) -> np.ndarray:
        """Aligned uint8 faces ``(N, 48, 48)`` → probabilities ``(N, K)``."""
        return predict_proba(self.model, faces, tta=self.tta)

    def faces(self, rgb: np.ndarray, scale=None) -> list[FaceResult]:
        """Detect, align and classify every face in one RGB uint8 image. With ``detector="none"``
        the whole image is one face crop (grey or RGB, any size), resized the FER way."""
        if self.detector_name == "none":
            crop = cv2.resize(to_grey(rgb), (SIDE, SIDE), interpolation=cv2.INTER_AREA)
            h, w = rgb.shape[:2]
            return [FaceResult(np.array([0, 0, w, h], np.float32), 1.0, self.classify(crop[None])[0], crop)]
        det = detect_faces(rgb, detector=self.detector_name, threshold=self.threshold,
                           scale=PHOTO_SCALES if scale is None else scale)
        if len(det) == 0:
            return []
        grey = to_grey(rgb)
        crops = np.stack([align_box(grey, b, lm, self.margin, SIDE) for b, lm in zip(det.boxes, det.landmarks)])
        probs = self.classify(crops)
        return [FaceResult(det.boxes[i], float(det.scores[i]), probs[i], crops[i]) for i in range(len(det))]

    @torch.no_grad()
    def track_sequence(self, crops: np.ndarray) -> np.ndarray:
        """One face track's crops ``(T, 48, 48)`` in time order → probabilities ``(K,)`` from the BiLSTM."""
        x = fit_to_model(torch.from_numpy(np.asarray(crops))[:, None], self.model.cfg.image_size)  # (T, 1, S, S)
        logits = self.model.forward_video(M.normalise(x, self.model.cfg)[None])                   # (1, K)
        return torch.softmax(logits, dim=1)[0].numpy()


def predict_images(images: Iterable[np.ndarray], detect: bool = False, weights: str | Path | None = None,
                   tta: str = "flip", label_set: str = DEFAULT_LABEL_SET) -> list[dict]:
    """Run a shipped model (``label_set``: ferplus | fer2013) or ``weights`` on in-memory images
    (grey or RGB arrays, any size).

    ``detect=False``: each image is one face crop (resized to 48×48). ``detect=True``: faces are
    detected first and each result holds a ``faces`` list. Returns JSON-able dicts.
    """
    images = list(images)
    pred = ExpressionPredictor(weights, tta=tta, label_set=label_set)
    if not detect:
        faces = np.stack([cv2.resize(to_grey(im), (SIDE, SIDE), interpolation=cv2.INTER_AREA) for im in images]) \
            if images else np.zeros((0, SIDE, SIDE), np.uint8)
        return [_probs_dict(p) for p in pred.classify(faces)]
    out = []
    for im in images:
        rgb = np.repeat(to_grey(im)[..., None], 3, axis=2) if np.asarray(im).ndim == 2 else np.asarray(im)[..., :3]
        out.append({"faces": [{"box": np.round(f.box, 1).tolist(), "score": round(f.score, 3), **_probs_dict(f.probs)}
                              for f in pred.faces(rgb)]})
    return out


def _probs_dict(p: np.ndarray) -> dict:
    names = class_names(len(p))
    return {"label": names[int(np.argmax(p))], "confidence": round(float(np.max(p)), 4),
            "probs": {c: round(float(v), 4) for c, v in zip(names, p)}}


# --------------------------------------------------------------------------- files

def list_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """Expand folders (recursively) into their image and video files; keep files as given (a missing
    one is reported when read). The same file named twice is read once."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            try:
                out += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS and not f.is_dir())
            except OSError as e:
                raise DataError(p, f"cannot list the folder ({e.strerror or e})") from None
        else:
            out.append(p)
    seen, unique = set(), []
    for f in out:
        key = os.path.abspath(f)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def annotated_paths(files: Sequence[Path], folder: Path) -> dict[Path, Path]:
    """Where ``--annotate`` writes each file's copy: ``folder/<stem>_expression.jpg|mp4``; files whose
    names would clash (``d1/face.jpg``, ``d2/face.jpg``) go to subfolders that mirror their own
    folders below the clashing files' common parent, so no copy ever overwrites another."""
    def name(f: Path, with_ext: bool = False) -> str:
        tag = f.suffix.replace(".", "_") if with_ext else ""
        return f"{f.stem}{tag}_expression{'.mp4' if _is_video(f) else '.jpg'}"

    groups: dict[str, list[Path]] = {}
    for f in files:
        groups.setdefault(name(f), []).append(f)
    out: dict[Path, Path] = {}
    for key, group in groups.items():
        if len(group) == 1:
            out[group[0]] = folder / key
            continue
        parents = [os.path.abspath(f.parent) for f in group]
        root = os.path.commonpath(parents)
        for f, parent in zip(group, parents):
            sub = folder / os.path.relpath(parent, root)
            out[f] = Path(os.path.normpath(sub / name(f, with_ext=parent in parents[:group.index(f)])))
    taken: set[Path] = set()
    for f, dst in out.items():  # a last guard: `face_png.jpg` beside `face.png`
        k = 1
        while dst in taken:
            k += 1
            dst = dst.with_name(f"{dst.stem}_{k}{dst.suffix}")
        taken.add(dst)
        out[f] = dst
    return out


def _is_video(path: Path) -> bool:
    """Anything that is not named as an image is read as a video (whose reader says what it is)."""
    return path.suffix.lower() not in IMAGE_EXTS


def _row(file: Path, frame: int, t: float | None, face: int, f: FaceResult) -> dict:
    r = {"file": str(file), "frame": frame, "time": None if t is None else round(t, 3), "face": face, "track": f.track,
         "x1": round(float(f.box[0]), 1), "y1": round(float(f.box[1]), 1), "x2": round(float(f.box[2]), 1),
         "y2": round(float(f.box[3]), 1), "det_score": round(f.score, 3), "label": f.label,
         "confidence": round(float(f.probs.max()), 4)}
    r.update({f"p_{c}": round(float(v), 4) for c, v in zip(class_names(len(f.probs)), f.probs)})
    return r


def predict_image_file(pred: ExpressionPredictor, path: Path, annotate_to: Path | None) -> dict:
    rgb = read_image(path)
    faces = pred.faces(rgb)
    if annotate_to is not None:
        write_image(annotate_to, draw_faces(rgb, faces))
    return {"file": str(path), "kind": "image", "rows": [_row(path, 0, None, i, f) for i, f in enumerate(faces)]}


def predict_video_file(pred: ExpressionPredictor, path: Path, n_frames: int, annotate_to: Path | None,
                       scale: float = 0.5) -> dict:
    """Split the video into ``n_frames`` frames, classify every face, link faces into tracks."""
    info = probe(path)
    times = frame_times(info.duration, n_frames)
    frames = sample_frames(path, n_frames).transpose(0, 2, 3, 1)       # (n, H, W, 3)
    per_frame = [pred.faces(np.ascontiguousarray(f), scale=(1.0, scale)) for f in frames]
    link_tracks(per_frame)
    rows = [_row(path, i, float(times[i]), j, f) for i, fs in enumerate(per_frame) for j, f in enumerate(fs)]
    tracks = []
    for tid in sorted({f.track for fs in per_frame for f in fs}):
        crops = np.stack([f.crop for fs in per_frame for f in fs if f.track == tid])
        p = pred.track_sequence(crops)
        tracks.append({"track": tid, "frames": len(crops), **_probs_dict(p)})
    if annotate_to is not None:
        annotate_video(path, annotate_to, times, per_frame)
    return {"file": str(path), "kind": "video", "duration": info.duration, "frames": n_frames,
            "rows": rows, "tracks": tracks}


def link_tracks(per_frame: list[list[FaceResult]], min_iou: float = 0.1) -> None:
    """Give each face a track id with the one tracker's linking (``faces.track.link_ids``): greedy
    best overlap with each track's last box; a face missed in a few sampled frames keeps its id."""
    boxes = [np.stack([f.box for f in faces]) if faces else np.zeros((0, 4)) for faces in per_frame]
    for faces, ids in zip(per_frame, link_ids(boxes, TrackerConfig(iou=min_iou, max_gap=len(per_frame)))):
        for f, i in zip(faces, ids):
            f.track = int(i)


def draw_faces(rgb: np.ndarray, faces: Sequence[FaceResult]) -> np.ndarray:
    """A copy of ``rgb`` with each face's box and ``label confidence`` drawn on it."""
    out = np.ascontiguousarray(rgb).copy()
    thick = max(1, round(max(out.shape[:2]) / 400))
    for f in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in f.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), thick)
        text = f"{f.label} {f.probs.max():.2f}"
        cv2.putText(out, text, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, (0, 255, 0), thick)
    return out


def annotate_video(src: Path, dst: Path, times: np.ndarray, per_frame: list[list[FaceResult]]) -> Path:
    """Every source frame, with the faces of the nearest analysed frame drawn; timing and audio kept."""
    return transform_video(src, dst, lambda rgb, t: draw_faces(rgb, per_frame[int(np.argmin(np.abs(times - t)))]))


TTA_MODES = ("none", "flip", "tencrop")
DETECTORS = ("centerface", "haar", "none")  # none: every input is already one face crop (--crops)


def check_options(detector: str, n_frames: int, tta: str, threshold: float, label_set: str = DEFAULT_LABEL_SET) -> None:
    """Refuse option values the predictor cannot use, before any work (one line each)."""
    if label_set not in LABEL_SETS:
        raise AffectlensError(f"unknown label set {label_set!r}: choose {' or '.join(LABEL_SETS)}")
    if detector not in DETECTORS:
        raise AffectlensError(f"unknown detector {detector!r}: choose {' or '.join(DETECTORS)}")
    if tta not in TTA_MODES:
        raise AffectlensError(f"unknown TTA mode {tta!r}: choose {', '.join(TTA_MODES)}")
    if not isinstance(n_frames, int) or n_frames < 1:
        raise AffectlensError(f"frames per video must be a whole number >= 1, not {n_frames!r}")
    if not 0 < threshold < 1:
        raise AffectlensError(f"detector threshold must be in (0, 1), not {threshold!r}")


def output_paths(out: Path) -> tuple[Path, Path, Path]:
    """``OUT.csv``, ``OUT.json`` and the ``OUT_annotated/`` folder."""
    return out.with_suffix(".csv"), out.with_suffix(".json"), out.parent / f"{out.name}_annotated"


def predict_paths(paths: Sequence[str | Path], out: str | Path, weights: str | Path | None = None,
                  detector: str = "centerface", n_frames: int = 16, tta: str = "flip",
                  annotate: bool = False, threshold: float = 0.5, *, backend: str = "local",
                  address: str | None = None, num_workers: int | None = None,
                  progress: bool = True, label_set: str = DEFAULT_LABEL_SET) -> tuple[list[dict], list[str]]:
    """Predict on images, folders and videos; write ``out.csv`` and ``out.json``. Returns (results, failures).

    Options and output locations are checked before any work; the files go through the one batch
    runner (:func:`affectlens.scale.run_batch`, locally or over Ray), so a file that fails is one
    line naming it and the others go on."""
    out = Path(out)
    check_options(detector, n_frames, tta, threshold, label_set)
    files = list_inputs(paths)
    empty = [f"{p}: folder holds no image or video files" for p in map(Path, paths)
             if p.is_dir() and not list_inputs([p])]
    if not files:
        raise DataError(", ".join(map(str, paths)), "no image or video files found")
    csv_path, json_path, annotate_dir = output_paths(out)
    for dst in (csv_path, json_path):
        check_output(dst, inputs=files)
    targets = annotated_paths(files, annotate_dir) if annotate else {}
    if annotate:
        check_output(annotate_dir, kind="dir", inputs=files)
    pred = ExpressionPredictor(weights, detector=detector, threshold=threshold, tta=tta, label_set=label_set)
    res = run_batch(files, partial(predict_file, pred=pred, n_frames=n_frames, targets=targets), None,
                    backend=backend, address=address, num_workers=num_workers, description="expression",
                    progress=progress)
    results, failures = [r for _, r in res.done], empty + res.failure_lines()
    write_outputs(out, results, failures, pred)
    return results, failures


def predict_file(f: Path, pred: ExpressionPredictor, n_frames: int, targets: dict) -> dict:
    """One image or video's result (module level, so Ray workers can run it); every row names the
    model and the label set that produced it."""
    res = predict_video_file(pred, f, n_frames, targets.get(f)) if _is_video(f) else predict_image_file(pred, f, targets.get(f))
    for row in res["rows"]:
        row.update(model=pred.model_name, label_set=pred.label_set)
    return res


def write_outputs(out: Path, results: list[dict], failures: list[str], pred: ExpressionPredictor) -> None:
    rows = [r for res in results for r in res["rows"]]
    fields = list(rows[0]) if rows else ["file", "frame", "time", "face", "track", "label"]
    with atomic_path(out.with_suffix(".csv")) as tmp:
        with tmp.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
    write_json(out.with_suffix(".json"), {"results": results, "failures": failures, "classes": list(pred.classes),
                                          "label_set": pred.label_set, "model": pred.model_name})
