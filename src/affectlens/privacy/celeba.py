"""CelebA reader: ``list_attr_celeba.txt``, ``identity_CelebA.txt``, ``list_eval_partition.txt``.

Layout (official or the 89×109 mirror)::

    root/list_attr_celeba.txt       N, then the 40 names, then "file ±1 × 40" rows
    root/identity_CelebA.txt        "file identity" rows
    root/list_eval_partition.txt    optional, "file 0|1|2" rows (train / val / test)
    root/img_align_celeba*/         the JPEGs

Without the partition file the split is identity-disjoint (no person in two splits), seeded.
A landmark cache (dlib, 68 points per image) is computed once and stored outside the repository.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from affectlens.errors import DataError
from affectlens.faces.landmarks import N_LANDMARKS, landmarks
from affectlens.files import atomic_path, cache_dir
from affectlens.media.image import read_image
from affectlens.privacy.model import as_tensor
from affectlens.report.console import track

N_ATTRIBUTES = 40
SPLITS = ("train", "val", "test")


@dataclass
class CelebA:
    """The index of a CelebA folder: files, 0/1 attributes ``(N, 40)``, identities ``(N,)``, split ids."""

    root: Path
    image_dir: Path
    files: list[str]
    attr_names: list[str]
    attributes: np.ndarray  # (N, 40) uint8 in {0, 1}
    identities: np.ndarray  # (N,) int64
    split: np.ndarray  # (N,) int8: 0 train, 1 val, 2 test

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == SPLITS.index(split))

    def path(self, i: int) -> Path:
        return self.image_dir / self.files[i]


def read_attributes(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """``list_attr_celeba.txt`` → (files, 40 names, ``(N, 40)`` uint8 with 1 = present)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "attribute file not found")
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise DataError(path, "expected the image count on line 1 and the 40 attribute names on line 2", line=1)
    names = lines[1].split()
    if len(names) != N_ATTRIBUTES:
        raise DataError(path, f"expected {N_ATTRIBUTES} attribute names, found {len(names)}", line=2)
    files, rows = [], []
    for n, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != N_ATTRIBUTES + 1 or any(v not in ("1", "-1") for v in parts[1:]):
            raise DataError(path, f"bad attribute row (want a file name and {N_ATTRIBUTES} values of ±1)", line=n)
        files.append(parts[0])
        rows.append([v == "1" for v in parts[1:]])
    if len(files) != int(lines[0]):
        raise DataError(path, f"header says {int(lines[0])} images, found {len(files)} rows", line=1)
    return files, names, np.asarray(rows, np.uint8).reshape(-1, N_ATTRIBUTES)


def read_pairs(path: str | Path, what: str) -> dict[str, int]:
    """``file int`` rows (identities or the eval partition) → dict."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, f"{what} file not found")
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(path, f"bad {what} row (want 'file integer')", line=n)
        out[parts[0]] = int(parts[1])
    return out


def identity_split(identities: np.ndarray, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> np.ndarray:
    """Assign whole identities to train / val / test so no person appears in two splits."""
    ids = np.unique(identities)
    rng = np.random.default_rng(seed)
    rng.shuffle(ids)
    cut1 = int(round(fractions[0] * len(ids)))
    cut2 = cut1 + int(round(fractions[1] * len(ids)))
    which = {i: (0 if k < cut1 else 1 if k < cut2 else 2) for k, i in enumerate(ids)}
    return np.array([which[i] for i in identities], np.int8)


def _image_dir(root: Path) -> Path:
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and d.name.startswith("img_align_celeba"))
    if not dirs:
        raise DataError(root, "no img_align_celeba* image folder")
    return dirs[0]


def load_celeba(root: str | Path, seed: int = 0) -> CelebA:
    """Read a CelebA folder; every attribute row must have an identity and an image file."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "CelebA folder not found")
    files, names, attrs = read_attributes(root / "list_attr_celeba.txt")
    ident_path = root / "identity_CelebA.txt"
    idents = read_pairs(ident_path, "identity")
    missing = [f for f in files if f not in idents]
    if missing:
        raise DataError(ident_path, f"{len(missing)} images have no identity (first: {missing[0]})")
    identities = np.array([idents[f] for f in files], np.int64)
    part_path = root / "list_eval_partition.txt"
    if part_path.is_file():
        part = read_pairs(part_path, "partition")
        split = np.array([part.get(f, -1) for f in files], np.int8)
        if (split < 0).any():
            raise DataError(part_path, f"{int((split < 0).sum())} images have no partition")
    else:
        split = identity_split(identities, seed=seed)
    image_dir = _image_dir(root)
    return CelebA(root, image_dir, files, names, attrs, identities, split)


def landmark_cache_path(ds: CelebA, cache: str | Path | None = None) -> Path:
    if cache is not None:
        return Path(cache)
    key = hashlib.sha1(f"{ds.image_dir.resolve()}|{len(ds.files)}".encode()).hexdigest()[:12]
    return cache_dir("privacy") / f"celeba_landmarks_{key}.npz"


def celeba_landmarks(ds: CelebA, cache: str | Path | None = None, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """68 dlib points for every image → ``(points (N, 68, 2), found (N,) bool)``, cached in an ``.npz``.

    Images where dlib finds no face are marked ``found=False`` (the paper filters them away).
    """
    path = landmark_cache_path(ds, cache)
    if path.is_file():
        z = np.load(path)
        if list(z["files"]) == ds.files:
            return z["points"], z["found"]
    points = np.zeros((len(ds.files), N_LANDMARKS, 2), np.float32)
    found = np.zeros(len(ds.files), bool)
    for i in track(range(len(ds.files)), "dlib landmarks", enabled=progress):
        pts = landmarks(read_image(ds.path(i)), upsample=1)
        if len(pts):
            points[i], found[i] = pts[0], True
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, files=np.array(ds.files), points=points, found=found)
    return points, found


def load_images(ds, idx: np.ndarray, hw: tuple[int, int], progress: bool = True) -> np.ndarray:
    """Decode and resize the chosen images → ``(n, H, W, 3)`` uint8 (kept in memory)."""
    out = np.zeros((len(idx), hw[0], hw[1], 3), np.uint8)
    for k, i in enumerate(track(idx, "decoding images", enabled=progress)):
        im = read_image(ds.path(int(i)))
        out[k] = im if im.shape[:2] == tuple(hw) else cv2.resize(im, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
    return out


class Arrays(torch.utils.data.Dataset):
    """Equal-length arrays served a whole batch per call (``__getitems__``) as a dict of tensors:
    the privacy stages keep their decoded images in memory and cut batches from them at once."""

    def __init__(self, **arrays: np.ndarray):
        self.arrays = {k: as_tensor(v) for k, v in arrays.items()}

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def __getitems__(self, idx: list[int]) -> dict:
        i = torch.as_tensor(idx, dtype=torch.long)
        return {k: v[i] for k, v in self.arrays.items()}


def as_batch(batch: dict) -> dict:
    """The DataLoader's collate step for :class:`Arrays`, whose batches come ready."""
    return batch


def subsample(idx: np.ndarray, fraction: float) -> np.ndarray:
    """The first ``fraction`` of ``idx`` (at least one), as the paper takes "the first 30 % of each
    of these splits"."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], not {fraction!r}")
    if fraction == 1 or not len(idx):
        return idx
    return idx[:max(1, round(fraction * len(idx)))]
