"""VGAF layout reader, a per-clip feature cache (frames + log-mels), and a Dataset over the cache.

VGAF layout: a folder of clips and a label file whose first line is ``Vid_name Label`` and whose
rows are ``<clip name> <1|2|3>`` (1 Positive, 2 Neutral, 3 Negative). The clip name may omit the
extension. A bad row (missing clip, unknown label, malformed) is reported with its line number and
skipped, or raised with ``on_error="error"``.

A clip name is relative to the dataset's clip folders: an absolute name or one that climbs out
with ``..`` is a bad row (the label file must not make us read files elsewhere); so is a second row
naming a clip already listed.

Cache: one ``.npz`` per clip under ``cache/v{T}_a{F}_s{S}/`` (``…_silence`` when missing audio is
filled with silence), at the clip name's own relative path (``a/clip`` and ``b/clip`` are two
entries): ``video`` (T, 3, S, S) uint8 RGB at ``t_i = (i + 0.5)·D/T``, ``audio`` (F, 1, 128, 251)
float16 log-mel of the 1-s windows centred on the audio frame times, and ``spec``, the options
that made it. Written atomically; an entry made with the same options is skipped (resumable), one
made with other options (or by an older version, without ``spec``) is made again.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch

from affectlens.errors import DataError
from affectlens.files import atomic_path
from affectlens.media import audio_windows, frame_times, load_audio, log_mel, probe, sample_frames
from affectlens.scale import run_batch

CLASSES = ("Positive", "Neutral", "Negative")
VIDEO_EXT = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
FEATURE_FORMAT = 2  # bump when clip_features changes what it computes: older cache entries are remade
# (2: audio frame times from the container's duration, as prediction uses, not from the audio's length)


@dataclass
class VgafItem:
    name: str    # the Vid_name as written in the label file
    path: Path   # resolved clip file
    label: int   # 0 Positive, 1 Neutral, 2 Negative
    line: int    # line number in the label file (1-based)


@dataclass
class VgafIndex:
    label_file: Path
    items: List[VgafItem] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)  # one line per bad row: "file:line: reason"


def find_label_file(root: Path, required: bool = True) -> Optional[Path]:
    """The label file of a VGAF folder: a .txt/.csv whose first line starts with ``Vid_name``."""
    root = Path(root)
    if root.is_file():
        return root
    if not root.is_dir():
        raise DataError(root, "dataset folder not found")
    found = []
    for p in sorted(root.glob("*.txt")) + sorted(root.glob("*.csv")):
        with open(p, encoding="utf-8", errors="replace") as fh:
            if fh.readline().strip().lower().startswith("vid_name"):
                found.append(p)
    if not found:
        if required:
            raise DataError(root, "no label file (a .txt/.csv starting with 'Vid_name Label') in this folder")
        return None
    return next((p for p in found if p.name == "labels.txt"), found[0])


def _clip_dirs(root: Path, label_file: Path, clips: Optional[Path]) -> List[Path]:
    if clips is not None:
        return [Path(clips)]
    base = root if root.is_dir() else label_file.parent
    cands = [base / "clips", base, base / label_file.stem, base / label_file.stem.split("_")[0]]
    return [d for d in dict.fromkeys(cands) if d.is_dir()]


def _resolve(name: str, dirs: Sequence[Path]) -> Optional[Path]:
    for d in dirs:
        p = d / name
        if p.is_file():
            return p
        for ext in VIDEO_EXT:
            if (d / (name + ext)).is_file():
                return d / (name + ext)
    return None


def read_vgaf(root: Path, labels: Optional[Path] = None, clips: Optional[Path] = None,
              on_error: str = "skip") -> VgafIndex:
    """Index a VGAF-layout dataset; ``on_error`` = ``"skip"`` (report bad rows) or ``"error"`` (raise)."""
    root = Path(root)
    label_file = Path(labels) if labels is not None else find_label_file(root)
    if not label_file.is_file():
        raise DataError(label_file, "label file not found")
    dirs = _clip_dirs(root, label_file, clips)
    index = VgafIndex(label_file)
    lines = label_file.read_text(encoding="utf-8", errors="replace").splitlines()
    seen: dict = {}
    for n, raw in enumerate(lines, start=1):
        row = raw.replace(",", " ").split()
        if not row or (n == 1 and row[0].lower() == "vid_name"):
            continue
        try:
            item = _parse_row(row, n, label_file, dirs)
            key = item.path.resolve()
            if key in seen:
                raise DataError(label_file, f"clip {item.name!r} is already listed on line {seen[key]}", line=n)
            seen[key] = n
            index.items.append(item)
        except DataError as e:
            if on_error == "error":
                raise
            index.errors.append(str(e))
    return index


def _parse_row(row: List[str], n: int, label_file: Path, dirs: Sequence[Path]) -> VgafItem:
    if len(row) != 2:
        raise DataError(label_file, f"expected 'Vid_name Label', got {' '.join(row)!r}", line=n)
    name, lab = row
    if Path(name).is_absolute() or ".." in Path(name).parts or "\\" in name:
        raise DataError(label_file, f"clip name {name!r} must be relative to the dataset folder "
                                    "(no absolute paths, no '..')", line=n)
    if lab not in ("1", "2", "3"):
        raise DataError(label_file, f"unknown label {lab!r} for {name} (labels are 1, 2, 3)", line=n)
    path = _resolve(name, dirs)
    if path is None:
        raise DataError(label_file, f"clip {name!r} not found in {', '.join(map(str, dirs)) or 'any folder'}", line=n)
    return VgafItem(name, path, int(lab) - 1, n)


# ----------------------------------------------------------------------------- features
@dataclass(frozen=True)
class FeatureSpec:
    n_video: int = 5
    n_audio: int = 5
    size: int = 224
    missing_audio: str = "error"  # or "silence"

    @property
    def key(self) -> str:
        """The cache folder name: every option that changes the features is in it."""
        return f"v{self.n_video}_a{self.n_audio}_s{self.size}" + ("" if self.missing_audio == "error" else
                                                                  f"_{self.missing_audio}")

    def as_text(self) -> str:
        """What an entry records of the options (and the feature format) that made it."""
        return json.dumps({"n_video": self.n_video, "n_audio": self.n_audio, "size": self.size,
                           "missing_audio": self.missing_audio, "format": FEATURE_FORMAT}, sort_keys=True)


def iter_window_features(path: Path, starts: Sequence[float], length: float, n_video: int, n_audio: int,
                         size: int, missing_audio: str = "error", chunk: int = 8) -> Iterator[dict]:
    """The one way a clip becomes model input, for training (``clip_features``, cached) and for
    prediction (``recipe.predict_video``, clip or sliding windows).

    For each window ``[s, s + length)`` of ``starts``: ``video`` (T, 3, S, S) uint8 RGB frames at
    ``s + t_i``, ``t_i = (i + 0.5)·length/T``, and ``audio`` (F, 1, 128, 251) float16 log-mels of the
    1-s windows centred on ``s + t_i`` for ``F`` audio frames. Frames are decoded in one pass,
    the audio once; windows come in chunks of ``chunk`` (arrays with a leading window axis) so
    a long video's log-mels never sit in memory at once. Feed them to a model with ``to_model_inputs``.
    """
    starts = np.asarray(starts, np.float64)
    audio = load_audio(path, missing=missing_audio)
    v_times = np.concatenate([s + frame_times(length, n_video) for s in starts])
    frames = sample_frames(path, len(v_times), size=(size, size), times=v_times)
    frames = frames.reshape(len(starts), n_video, *frames.shape[1:])  # (W, T, 3, S, S)
    for k in range(0, len(starts), chunk):
        centres = np.concatenate([s + frame_times(length, n_audio) for s in starts[k:k + chunk]])
        mel = log_mel(audio_windows(audio, centres)).astype(np.float16)
        yield {"video": frames[k:k + chunk], "audio": mel.reshape(-1, n_audio, *mel.shape[1:])}


def to_model_inputs(video: np.ndarray, audio: np.ndarray):
    """uint8 frames and float16 log-mels (as ``iter_window_features`` makes and the cache keeps) →
    the float32 tensors the model reads: video in [0, 1], audio as it was."""
    return torch.from_numpy(np.ascontiguousarray(video)).float().div_(255.0), torch.from_numpy(audio.astype(np.float32))


def clip_features(path: Path, spec: FeatureSpec) -> dict:
    """One training clip: ``video`` (T, 3, S, S) uint8 and ``audio`` (F, 1, 128, 251) float16 over the
    whole clip (one window of the container's duration), and that ``duration``."""
    duration = probe(path).duration
    feats = next(iter_window_features(path, [0.0], duration, spec.n_video, spec.n_audio, spec.size,
                                      spec.missing_audio))
    return {"video": feats["video"][0], "audio": feats["audio"][0], "duration": np.float64(duration)}


def cache_path(cache: Path, spec: FeatureSpec, name: str) -> Path:
    """``cache/<spec.key>/<name without its extension>.npz``, keeping the name's subfolders."""
    rel = Path(name)
    if rel.suffix.lower() in VIDEO_EXT:
        rel = rel.with_suffix("")
    return Path(cache) / spec.key / rel.parent / (rel.name + ".npz")


def entry_is_current(path: Path, spec: FeatureSpec) -> bool:
    """True when the cache entry at ``path`` was made with ``spec`` (and is readable)."""
    try:
        with np.load(path) as z:
            return "spec" in z.files and str(z["spec"]) == spec.as_text()
    except Exception:  # noqa: BLE001 - a damaged entry is simply not current: it is made again
        return False


def cache_clip(item: VgafItem, cache: Path, spec: FeatureSpec) -> Path:
    """Extract one clip's features into its cache entry (atomically) and return the entry's path.

    Module level and free of state, so :func:`affectlens.scale.run_batch` can ship it to Ray workers.
    """
    out = cache_path(cache, spec, item.name)
    feats = clip_features(item.path, spec)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, video=feats["video"], audio=feats["audio"],
                     duration=feats["duration"], label=np.int64(item.label), spec=np.str_(spec.as_text()))
    return out


def extract_features(items: Sequence[VgafItem], cache: Path, spec: FeatureSpec, progress: bool = True, *,
                     backend: str = "local", address: str | None = None, workers: int | None = None,
                     resume: bool = True) -> dict:
    """Fill the cache for ``items`` through :func:`affectlens.scale.run_batch` (in this process or over
    Ray): entries already there are skipped when ``resume``; bad clips are reported, not fatal."""
    res = run_batch(items, functools.partial(cache_clip, cache=cache, spec=spec),
                    functools.partial(_cache_entry, cache=cache, spec=spec), backend=backend, address=address,
                    num_workers=workers, resume=resume, description=f"features {spec.key}", progress=progress,
                    up_to_date=functools.partial(_entry_is_current, spec=spec))
    failed = res.failure_lines(lambda it: it.path)
    return {"cache": str(Path(cache) / spec.key), "written": len(res.done), "skipped_existing": len(res.skipped),
            "failed": failed, "backend": res.backend, "seconds": res.seconds}


def _entry_is_current(item: VgafItem, path: Path, spec: FeatureSpec) -> bool:
    return entry_is_current(path, spec)


def _cache_entry(item: VgafItem, cache: Path, spec: FeatureSpec) -> Path:
    """Where ``cache_clip`` writes ``item`` (module level, so Ray workers can unpickle it)."""
    return cache_path(cache, spec, item.name)


class GroupClips:
    """A torch-style Dataset over cached clips: samples ``{"video", "audio", "label", "id"}``.

    ``video`` (T, 3, S, S) float32 in [0, 1]; ``audio`` (F, 1, 128, 251) float32 log-mel.
    Items whose cache entry is missing (failed extraction) are dropped and listed in ``missing``.
    """

    def __init__(self, items: Sequence[VgafItem], cache: Path, spec: FeatureSpec, in_memory: bool = False):
        self.spec = spec
        self.entries, self.missing = [], []
        for it in items:
            p = cache_path(cache, spec, it.name)
            (self.entries if p.exists() else self.missing).append((p, it.label, it.name))
        self._mem = [self._load(i) for i in range(len(self.entries))] if in_memory else None

    def __len__(self) -> int:
        return len(self.entries)

    def _load(self, i: int) -> dict:

        path, label, name = self.entries[i]
        with np.load(path) as z:
            video, audio = to_model_inputs(z["video"], z["audio"])  # (T, 3, S, S), (F, 1, 128, 251)
        return {"video": video, "audio": audio, "label": label, "id": name}

    def __getitem__(self, i: int) -> dict:
        return self._mem[i] if self._mem is not None else self._load(i)

    @property
    def labels(self) -> np.ndarray:
        return np.array([e[1] for e in self.entries], dtype=np.int64)
