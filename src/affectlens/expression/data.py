"""FER2013 readers: the original csv (``emotion,pixels,Usage``) and the image-folder layout.

Both give the same thing, a :class:`FerSet` of uint8 images ``(N, 48, 48)``, labels ``(N,)``
in the FER2013 order (0 angry … 6 neutral), the official ``Usage`` of each sample
(``Training`` / ``PublicTest`` / ``PrivateTest``) and an id (csv row number or file name).

* csv: one row per face, ``pixels`` = 2304 space-separated grey values, row order kept.
* folder: ``train/<class>/`` and ``test/<class>/`` with the Usage as file-name prefix
  (``Training_123.jpg``, ``PublicTest_9.jpg``, ``PrivateTest_7.jpg``); ``train/`` holds only
  Training, ``test/`` the two test splits. Files are read once; :func:`load_fer` caches the decoded
  arrays in an ``.npz`` so training never decodes 35,887 JPEGs twice.

A malformed row or file raises :class:`affectlens.errors.DataError` naming it.
"""
from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from affectlens.errors import DataError
from affectlens.files import atomic_path
from affectlens.files import cache_dir as user_cache_dir
from affectlens.media.image import IMAGE_EXTS, read_grey

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
USAGES = ("Training", "PublicTest", "PrivateTest")
SIDE = 48


@dataclass
class FerSet:
    """Decoded FER2013 samples. ``images`` (N, 48, 48) uint8, ``labels`` (N,) int64, ``usage``/``ids`` (N,) str."""

    images: np.ndarray
    labels: np.ndarray
    usage: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def split(self, usage: str) -> FerSet:
        """The samples of one official split (``Training``, ``PublicTest`` or ``PrivateTest``)."""
        if usage not in USAGES:
            raise ValueError(f"usage must be one of {USAGES}, got {usage!r}")
        keep = self.usage == usage
        return FerSet(self.images[keep], self.labels[keep], self.usage[keep], self.ids[keep])

    def samples(self) -> Iterator[dict]:
        """Sample dicts per the data contract: ``image`` (1, 48, 48) uint8, ``label``, ``id``, ``usage``."""
        for i in range(len(self)):
            yield {"image": self.images[i][None], "label": int(self.labels[i]), "id": str(self.ids[i]),
                   "usage": str(self.usage[i])}

    def counts(self) -> dict[str, dict[str, int]]:
        """Samples per split and class, e.g. ``{"Training": {"angry": 3995, …}, …}``."""
        out = {}
        for u in USAGES:
            lab = self.labels[self.usage == u]
            out[u] = {c: int((lab == k).sum()) for k, c in enumerate(CLASSES)}
        return out


def read_fer_csv(path: str | Path) -> FerSet:
    """Read the original ``fer2013.csv``; a bad row raises ``DataError`` with its line number."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    images, labels, usage, ids = [], [], [], []
    with path.open("rb") as f:
        reader = csv.reader(_text_lines(path, f))
        rows = _csv_rows(path, reader)
        header = next(rows, (1, None))[1]
        if header is None or [h.strip() for h in header[:3]] != ["emotion", "pixels", "Usage"]:
            shown = repr(header) if header is None or len(repr(header)) <= 80 else repr(header)[:77] + "..."
            raise DataError(path, f"header must be 'emotion,pixels,Usage', got {shown}", line=1)
        for line, row in rows:
            if not row:
                continue
            img, lab, use = _parse_csv_row(path, line, row)
            images.append(img)
            labels.append(lab)
            usage.append(use)
            ids.append(f"row{line}")
    if not images:
        raise DataError(path, "no samples")
    return FerSet(np.stack(images), np.asarray(labels, np.int64), np.asarray(usage), np.asarray(ids))


MAX_LINE_BYTES = 1 << 20  # a FER2013 row is ~9 KB


def _text_lines(path: Path, f) -> Iterator[str]:
    """Decode a binary file line by line, so that a byte that is not UTF-8 is reported with its line
    (a leading BOM is dropped); a line over ``MAX_LINE_BYTES`` is refused before it fills memory."""
    n = 0
    while True:
        raw = f.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        n += 1
        if len(raw) > MAX_LINE_BYTES:
            raise DataError(path, f"line longer than {MAX_LINE_BYTES >> 20} MB (not a FER2013 csv row)", line=n)
        try:
            yield raw.decode("utf-8-sig" if n == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise DataError(path, f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})",
                            line=n) from None


def _csv_rows(path: Path, reader) -> Iterator[tuple[int, list[str]]]:
    """``(line, row)`` from a csv reader; a row the csv module cannot read is a DataError naming its
    line (a 140,000-character field, a NUL byte)."""
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataError(path, f"malformed csv row ({e})", line=line) from None
        yield line, row


def _parse_csv_row(path: Path, line: int, row: list[str]) -> tuple[np.ndarray, int, str]:
    if len(row) != 3:
        raise DataError(path, f"expected 3 fields (emotion,pixels,Usage), got {len(row)}", line=line)
    emotion, pixels, use = (r.strip() for r in row)
    if emotion not in {str(k) for k in range(len(CLASSES))}:
        raise DataError(path, f"unknown emotion label {_short(emotion)} (expected 0-6)", line=line)
    if use not in USAGES:
        raise DataError(path, f"unknown Usage {_short(use)} (expected one of {', '.join(USAGES)})", line=line)
    if len(pixels) > 8 * SIDE * SIDE:  # 2304 values of at most 3 digits and a space: ~9 KB
        raise DataError(path, f"pixels field is {len(pixels)} characters long (expected {SIDE * SIDE} values)",
                        line=line)
    try:
        values = np.array(pixels.split(), dtype=np.int64)
    except (ValueError, OverflowError):
        raise DataError(path, "pixels must be integers", line=line) from None
    if values.size != SIDE * SIDE:
        raise DataError(path, f"expected {SIDE * SIDE} pixels, got {values.size}", line=line)
    if values.min() < 0 or values.max() > 255:
        raise DataError(path, "pixel values must be 0-255", line=line)
    return values.astype(np.uint8).reshape(SIDE, SIDE), int(emotion), use


def _short(text: str, limit: int = 40) -> str:
    """``repr`` of a field, cut to ``limit`` characters (a bad field can be megabytes long)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def folder_entries(root: str | Path) -> list[tuple[Path, int, str]]:
    """``(file, label, usage)`` for every image of the folder layout, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "not a directory")
    entries = []
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise DataError(root / part, "missing (the folder layout needs train/ and test/)")
        for cls_dir in sorted(p for p in (root / part).iterdir() if p.is_dir()):
            if cls_dir.name not in CLASSES:
                raise DataError(cls_dir, f"unknown class folder (expected one of {', '.join(CLASSES)})")
            for f in sorted(cls_dir.iterdir()):
                if f.suffix.lower() not in IMAGE_EXTS:
                    continue
                use = f.name.split("_", 1)[0]
                if use not in USAGES or (part == "train") != (use == "Training"):
                    raise DataError(f, f"file name must start with a Usage prefix valid for {part}/")
                entries.append((f, CLASSES.index(cls_dir.name), use))
    if not entries:
        raise DataError(root, "no images found")
    return entries


def read_fer_folder(root: str | Path) -> FerSet:
    """Read the image-folder layout (every image must be 48×48; colour is converted to grey)."""
    entries = folder_entries(root)
    images = np.empty((len(entries), SIDE, SIDE), np.uint8)
    for i, (f, _, _) in enumerate(entries):
        img = read_grey(f)
        if img.shape != (SIDE, SIDE):
            raise DataError(f, f"expected a {SIDE}x{SIDE} image, got {img.shape[1]}x{img.shape[0]}")
        images[i] = img
    labels = np.array([e[1] for e in entries], np.int64)
    usage = np.array([e[2] for e in entries])
    ids = np.array([f"{e[0].parent.parent.name}/{e[0].parent.name}/{e[0].name}" for e in entries])
    return FerSet(images, labels, usage, ids)


def load_fer(path: str | Path, cache_dir: str | Path | None = None) -> FerSet:
    """Read FER2013 from a csv or a folder; folders are cached as ``.npz`` (keyed by path and file list)."""
    path = Path(path)
    if path.is_file():
        return read_fer_csv(path)
    if not path.is_dir():
        raise DataError(path, "not found (give fer2013.csv or the folder with train/ and test/)")
    entries = folder_entries(path)
    key = hashlib.sha1("\n".join(f"{e[0]}:{e[0].stat().st_size}" for e in entries).encode()).hexdigest()[:16]
    cache = Path(cache_dir or user_cache_dir()) / f"fer2013_{key}.npz"
    if cache.is_file():
        z = np.load(cache)
        return FerSet(z["images"], z["labels"], z["usage"], z["ids"])
    fer = read_fer_folder(path)

    with atomic_path(cache) as tmp:
        np.savez(tmp, images=fer.images, labels=fer.labels, usage=fer.usage, ids=fer.ids)
    return fer


# --------------------------------------------------------------------------- FER+ (ten annotators per image)

FERPLUS_CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
VOTE_FIELDS = FERPLUS_CLASSES + ("unknown", "NF")
LABEL_MODES = ("fer2013", "ferplus-majority", "ferplus-soft", "ferplus-pld")


@dataclass(frozen=True)
class FerPlusVotes:
    """FER+ votes joined to our images: ``ids`` (N,) the ``path`` column (as ``FerSet.ids`` of the
    folder layout), ``votes`` (N, 10) counts of ``VOTE_FIELDS``."""

    ids: np.ndarray
    votes: np.ndarray


def ferplus_beside(data: str | Path) -> Path:
    """Where the FER+ votes of a FER2013 copy are expected: ``ferplus.csv`` in the image folder, or
    beside ``fer2013.csv``."""
    data = Path(data)
    return (data.parent if data.suffix.lower() == ".csv" else data) / "ferplus.csv"


def read_ferplus(path: str | Path) -> FerPlusVotes:
    """``ferplus.csv`` (``path, Usage, ferplus_image, match_mad`` and the ten vote counts). A row whose
    counts are not whole numbers from 0 to 10 summing to 1-12, or whose path appears twice, is one
    ``DataError`` naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "FER+ votes not found (expected ferplus.csv beside the FER2013 folders)")
    ids, votes, seen = [], [], set()
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [f for f in ("path", *VOTE_FIELDS) if f not in (reader.fieldnames or [])]
        if missing:
            raise DataError(path, f"missing columns {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            try:
                v = [int(row[f]) for f in VOTE_FIELDS]
            except (TypeError, ValueError):
                raise DataError(path, "vote counts must be whole numbers", line=line) from None
            if min(v) < 0 or max(v) > 10 or not 1 <= sum(v) <= 12:
                raise DataError(path, f"vote counts {v} do not add up to one image's ten annotators", line=line)
            if row["path"] in seen:
                raise DataError(path, f"{_short(row['path'])} appears twice", line=line)
            seen.add(row["path"])
            ids.append(row["path"])
            votes.append(v)
    if not ids:
        raise DataError(path, "no rows")
    return FerPlusVotes(np.array(ids), np.array(votes, np.int64))


def ferplus_targets(votes: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """``(keep (N,) bool, targets)`` for a FER+ protocol (Barsoum et al. 2016).

    A vote cast by a single annotator is dropped as noise first. ``ferplus-majority``: an image is
    kept when one emotion has more than half of the remaining votes (images whose top vote is
    ``unknown`` or not-a-face are dropped), target the class index (N,). ``ferplus-soft`` and
    ``ferplus-pld``: kept when the emotions hold more than half of the remaining votes and the top
    vote is an emotion; target the vote distribution over the 8 emotions (N, 8) — soft trains on it
    with cross-entropy, pld draws a label from it each time a sample is seen. Test accuracy is
    always against the majority label.
    """
    if mode not in LABEL_MODES[1:]:
        raise ValueError(f"FER+ mode must be one of {', '.join(LABEL_MODES[1:])}, not {mode!r}")
    v = np.where(votes > 1, votes, 0).astype(np.float64)  # (N, 10)
    total = v.sum(1)
    top = v.argmax(1)
    emotion = top < len(FERPLUS_CLASSES)
    if mode == "ferplus-majority":
        keep = emotion & (v.max(1) > 0.5 * total)
        return keep, top.astype(np.int64)
    e = v[:, :len(FERPLUS_CLASSES)]
    keep = emotion & (e.sum(1) > 0.5 * total)
    return keep, (e / np.maximum(e.sum(1, keepdims=True), 1)).astype(np.float32)


def ferplus_split(fer: FerSet, votes: FerPlusVotes, usage: str, mode: str) -> tuple[FerSet, np.ndarray | None]:
    """One split of ``fer`` with FER+ labels: the images ``mode`` keeps, their majority label in
    ``labels`` (class indices of ``FERPLUS_CLASSES``), and for ``soft``/``pld`` the vote
    distributions (n, 8) (None for majority). Images without votes (not in ``ferplus.csv``) are an error."""
    part = fer.split(usage)
    row = {p: i for i, p in enumerate(votes.ids)}
    missing = [i for i in part.ids if i not in row]
    if missing:
        raise DataError(missing[0], f"has no FER+ votes ({len(missing)} images of {usage} lack them)")
    v = votes.votes[[row[i] for i in part.ids]]
    keep_major, major = ferplus_targets(v, "ferplus-majority")
    if mode == "ferplus-majority":
        keep, dist = keep_major, None
    else:
        keep, dist = ferplus_targets(v, mode)
        keep = keep & keep_major  # evaluation and selection read the majority label: it must exist
        dist = dist[keep]
    out = FerSet(part.images[keep], major[keep], part.usage[keep], part.ids[keep])
    return out, dist


# FER2013's names for the seven emotions both label sets share; FER+ adds contempt.
_SAME_EMOTION = {"angry": "anger", "happy": "happiness", "sad": "sadness"}


def same_emotion(source: Sequence[str], target: Sequence[str]) -> list[int | None]:
    """For each ``target`` class, the index of the same emotion among ``source``'s (None where the
    source has no such class): FER2013's ``happy`` is FER+'s ``happiness``, ``angry`` ``anger``,
    ``sad`` ``sadness``; FER2013 has no ``contempt``."""
    where = {_SAME_EMOTION.get(c, c): i for i, c in enumerate(source)}
    return [where.get(_SAME_EMOTION.get(c, c)) for c in target]


def map_probs(probs: np.ndarray, source: Sequence[str], target: Sequence[str]) -> np.ndarray:
    """Class probabilities ``(N, len(source))`` onto ``target``'s columns by emotion
    (:func:`same_emotion`), so a model of one label set can be scored on the other; a target class
    the source lacks (FER+ ``contempt``) gets 0, a source class the target lacks is dropped and the
    rest renormalised."""
    cols = same_emotion(source, target)
    out = np.stack([probs[:, i] if i is not None else np.zeros(len(probs)) for i in cols], axis=1)
    return out / np.maximum(out.sum(1, keepdims=True), 1e-12)
