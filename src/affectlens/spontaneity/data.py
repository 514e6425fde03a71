"""Onset/apex manifests, the USTC-NVIE-style folder reader, and raw frame → 44 × 44 preprocessing.

Manifest (CSV, UTF-8, header required; paths relative to the manifest's folder or absolute)::

    subject,onset,apex,label[,id][,expression]
    S001,posed/S001/happy_1/onset.png,posed/S001/happy_1/apex.png,posed

``label`` is ``posed`` or ``spontaneous`` (``0``/``1`` are accepted too). Training reads the images
as 44 × 44 grey crops; raw frames go through ``preprocess_manifest`` first (face detector → eye-line
alignment → 44 × 44 grey), which writes the crops and a new manifest.

Folder tree accepted by ``scan_ustc_nvie`` (USTC-NVIE's visible database, and SPOS, re-arranged
into one pattern)::

    ROOT/<class>/<subject>/[any sub-folders, e.g. front|left|right illumination, expression]/<sample>/

* ``<class>`` is a folder whose name starts with ``posed`` or ``spontaneous`` (case-insensitive;
  ``Posed_Database`` and ``spontaneous database`` work);
* ``<subject>`` is the first folder below it (``S001``, ``001``, …);
* a ``<sample>`` folder holds either (a) one image whose name contains ``onset`` and one whose name
  contains ``apex`` (``onset.jpg``/``apex.jpg``, ``001_onset.bmp`` …), or (b) a frame sequence plus a
  label file ``onset_apex.txt`` with two lines ``onset <frame file>`` and ``apex <frame file>``;
* folders named ``infrared``/``IR``/``thermal`` are skipped (the paper uses the visible images).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from affectlens.errors import DataError, MediaError
from affectlens.faces.align import align_eyes
from affectlens.faces.detect import PHOTO_SCALES, CenterFace, make_detector
from affectlens.files import atomic_path
from affectlens.media.image import IMAGE_EXTS, read_grey, write_image
from affectlens.media.image import read_image as read_rgb
from affectlens.scale import run_batch

MANIFEST_FIELDS = ("subject", "onset", "apex", "label")
LABELS = {"posed": 0, "spontaneous": 1, "0": 0, "1": 1}
LABEL_NAMES = ("posed", "spontaneous")
SIZE = 44
SKIP_DIRS = {"infrared", "ir", "thermal"}


@dataclass(frozen=True)
class PairSample:
    subject: str
    onset: Path
    apex: Path
    label: int  # 0 = posed, 1 = spontaneous
    id: str
    expression: str = ""

    def __str__(self) -> str:  # how a batch report names the pair
        return f"pair {self.id}"


def read_manifest(path: str | Path) -> List[PairSample]:
    """Parse and validate a manifest; every bad row raises ``DataError`` naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "manifest not found")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in MANIFEST_FIELDS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(path, f"missing column(s) {', '.join(missing)}; need {','.join(MANIFEST_FIELDS)}", line=1)
        rows = []
        for line, row in enumerate(reader, start=2):
            rows.append(_parse_row(path, line, row))
    if not rows:
        raise DataError(path, "manifest has no rows")
    return rows


def _parse_row(path: Path, line: int, row: dict) -> PairSample:
    label = (row.get("label") or "").strip().lower()
    if label not in LABELS:
        raise DataError(path, f"label {row.get('label')!r} is not posed/spontaneous", line=line)
    subject = (row.get("subject") or "").strip()
    if not subject:
        raise DataError(path, "empty subject", line=line)
    files = []
    for key in ("onset", "apex"):
        value = (row.get(key) or "").strip()
        if not value:
            raise DataError(path, f"empty {key} path", line=line)
        p = Path(value)
        files.append(p if p.is_absolute() else path.parent / p)
    sid = (row.get("id") or "").strip() or f"{subject}_{line - 1:05d}"
    return PairSample(subject, files[0], files[1], LABELS[label], sid, (row.get("expression") or "").strip())


def write_manifest(path: str | Path, samples: Sequence[PairSample]) -> Path:
    """Write samples atomically with paths relative to the manifest's folder where possible."""
    path = Path(path)
    base = path.parent.resolve()

    def rel(p: Path) -> str:
        p = Path(p).resolve()
        try:
            return p.relative_to(base).as_posix()
        except ValueError:
            return str(p)

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(list(MANIFEST_FIELDS) + ["id", "expression"])
        for s in samples:
            w.writerow([s.subject, rel(s.onset), rel(s.apex), LABEL_NAMES[s.label], s.id, s.expression])
    return path


def _class_of(name: str) -> Optional[int]:
    n = name.lower()
    if n.startswith("posed"):
        return 0
    if n.startswith("spontaneous"):
        return 1
    return None


def _pair_in(folder: Path) -> Optional[Tuple[Path, Path] | str]:
    """(onset, apex) inside one sample folder, None when the folder is not a sample, or the reason a
    sample is discarded (it lacks its onset or its apex frame, as the paper's discarded ones do)."""
    label_file = folder / "onset_apex.txt"
    if label_file.is_file():
        names = {}
        for line_no, line in enumerate(label_file.read_text(encoding="utf-8").splitlines(), 1):
            parts = line.split()
            if len(parts) == 2 and parts[0].lower() in ("onset", "apex"):
                names[parts[0].lower()] = folder / parts[1]
            elif parts:
                raise DataError(label_file, f"expected 'onset <frame>' or 'apex <frame>', got {line!r}", line=line_no)
        if set(names) != {"onset", "apex"}:
            return f"{label_file}: has no {'onset' if 'onset' not in names else 'apex'} line"
        missing = [k for k in ("onset", "apex") if not names[k].is_file()]
        if missing:
            return f"{names[missing[0]]}: the {missing[0]} frame named in {label_file.name} is not there"
        return names["onset"], names["apex"]
    images = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
    onset = sorted(p for p in images if "onset" in p.stem.lower())
    apex = sorted(p for p in images if "apex" in p.stem.lower())
    if len(onset) == 1 and len(apex) == 1:
        return onset[0], apex[0]
    if len(onset) > 1 or len(apex) > 1:
        raise DataError(folder, f"found {len(onset)} onset and {len(apex)} apex images; need exactly one of each")
    if onset or apex:
        return f"{folder}: has no {'apex' if onset else 'onset'} image"
    return None


def read_subset(path: str | Path) -> List[str]:
    """Sample ids, one per line (blank lines and ``#`` comments skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "subset file not found")
    ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    ids = [i for i in ids if i and not i.startswith("#")]
    if not ids:
        raise DataError(path, "lists no sample ids")
    return ids


def scan_ustc_nvie(root: str | Path, subset: Optional[Sequence[str]] = None) -> Tuple[List[PairSample], List[str]]:
    """Manifest rows from the folder tree documented in this module, and the samples discarded.

    A sample folder that lacks its onset or its apex frame is discarded, not fatal (the paper keeps
    the 4,203 complete samples of USTC-NVIE), and listed with why; a malformed ``onset_apex.txt``
    is still an error naming its line. ``subset``: sample ids (``posed/S001/front/happy``) to keep,
    e.g. the paper's 1,028-sample subset; an id listed but not found is listed as discarded too.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "not a folder")
    samples: List[PairSample] = []
    discarded: List[str] = []
    for cls_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        label = _class_of(cls_dir.name)
        if label is None:
            continue
        for subj_dir in sorted(p for p in cls_dir.iterdir() if p.is_dir()):
            for folder in sorted([subj_dir, *(p for p in subj_dir.rglob("*") if p.is_dir())]):
                if SKIP_DIRS & {part.lower() for part in folder.relative_to(root).parts}:
                    continue
                pair = _pair_in(folder)
                if pair is None:
                    continue
                if isinstance(pair, str):
                    discarded.append(pair)
                    continue
                rel = folder.relative_to(subj_dir).as_posix()
                sid = f"{LABEL_NAMES[label]}/{subj_dir.name}" + ("" if rel == "." else f"/{rel}")
                samples.append(PairSample(subj_dir.name, pair[0], pair[1], label, sid))
    if subset is not None:
        wanted = list(dict.fromkeys(subset))
        found = {s.id for s in samples}
        samples = [s for s in samples if s.id in set(wanted)]
        discarded += [f"{sid}: listed in the subset, not found under {root}" for sid in wanted if sid not in found]
    if not samples:
        raise DataError(root, "no onset/apex pairs found (expected ROOT/posed|spontaneous/<subject>/.../<sample>/)")
    return samples, discarded


def read_crop(path: str | Path) -> np.ndarray:
    """A 44 × 44 aligned grey crop; raw frames are refused with a pointer to ``preprocess``."""
    img = read_grey(path)
    if img.shape != (SIZE, SIZE):
        raise DataError(path, f"is {img.shape[1]}×{img.shape[0]}, expected a {SIZE}×{SIZE} aligned crop; "
                              "run `affectlens spontaneity preprocess` on raw frames first")
    return img


def load_pairs(samples: Sequence[PairSample], progress: Optional[Callable[[], None]] = None):
    """Arrays for training: onset, apex (N, 44, 44) uint8, labels (N,) int64, subjects (N,) str."""
    onset, apex = [], []
    for s in samples:
        onset.append(read_crop(s.onset))
        apex.append(read_crop(s.apex))
        if progress is not None:
            progress()
    labels = np.array([s.label for s in samples], dtype=np.int64)
    subjects = np.array([s.subject for s in samples])
    return np.stack(onset), np.stack(apex), labels, subjects


# ---------------------------------------------------------------- preprocessing: detect → align → crop

def detect_and_align(rgb: np.ndarray, detector=None, name: str = "image") -> np.ndarray:
    """Highest-scoring face in an RGB uint8 image → 44 × 44 aligned grey crop.

    ``detector`` is a callable returning ``affectlens.faces.detect.Detections`` (default: CenterFace).
    Raises ``MediaError`` naming ``name`` when no face is found.
    """
    if detector is None:
        detector = detector_named("centerface")
    det = detector(rgb)
    if det is None or len(det.scores) == 0:
        raise MediaError(name, "no face detected")
    best = int(np.argmax(det.scores))
    eyes = np.asarray(det.landmarks[best])[:2]
    return align_eyes(rgb, eyes[0], eyes[1], SIZE)


@lru_cache(maxsize=4)
def detector_named(name: str = "centerface"):
    """The face detector ``preprocess`` uses, built once per process (and per Ray worker):
    CenterFace over the photo scales, or OpenCV's Haar cascade as in the paper."""
    return CenterFace(threshold=0.5, scale=PHOTO_SCALES) if name == "centerface" else make_detector(name)


def to_crop(path: str | Path, detector=None) -> np.ndarray:
    """Any image file → 44 × 44 aligned grey crop (a file already 44 × 44 grey is taken as a crop)."""
    img = read_rgb(path)
    if img.shape[:2] == (SIZE, SIZE):
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return detect_and_align(img, detector, name=str(path))


# ---------------------------------------------------------------- a manifest of raw frames → crops

def crop_paths(sample: PairSample, crops: Path) -> dict[str, Path]:
    """Where ``preprocess`` writes a pair's two crops: ``crops/<id>_onset.png`` and ``_apex.png``."""
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in sample.id)
    return {k: Path(crops) / f"{stem}_{k}.png" for k in ("onset", "apex")}


def preprocess_pair(sample: PairSample, crops: Path, detector: str = "centerface") -> Path:
    """One pair's raw frames → its two aligned 44 × 44 crops, each written atomically (the apex crop
    last: it is the output the batch runner checks). Module level, so Ray can ship it."""
    dst = crop_paths(sample, crops)
    for key, src in (("onset", sample.onset), ("apex", sample.apex)):
        write_image(dst[key], to_crop(src, detector_named(detector)))
    return dst["apex"]


def preprocess_manifest(manifest: str | Path, out: str | Path, detector: str = "centerface", *,
                        backend: str = "local", address: str | None = None, num_workers: int | None = None,
                        resume: bool = True, progress: bool = True):
    """Raw frames → aligned crops under ``out/crops/`` and ``out/manifest.csv`` of the pairs that worked.

    Runs through the one batch runner (:func:`affectlens.scale.run_batch`): pairs whose crops exist
    are skipped (resume), a bad file costs only its pair, and ``backend="ray"`` spreads the pairs
    over a cluster. Returns ``(manifest path, BatchResult)``.
    """
    samples = read_manifest(manifest)
    crops = Path(out) / "crops"
    res = run_batch(samples, partial(preprocess_pair, crops=crops, detector=detector),
                    lambda s: crop_paths(s, crops)["apex"], backend=backend, address=address,
                    num_workers=num_workers, resume=resume, description="aligning faces", progress=progress)
    ok = {s.id for s, _ in res.done + res.skipped}
    done = [PairSample(s.subject, *crop_paths(s, crops).values(), s.label, s.id, s.expression)
            for s in samples if s.id in ok]
    if not done:
        raise DataError(manifest, f"no pair could be preprocessed ({len(res.failed)} failed)")
    return write_manifest(Path(out) / "manifest.csv", done), res
