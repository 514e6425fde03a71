"""YouTube-8M features: readers of the video-level and frame-level shards (2017 and 2018
releases), a streaming dataset over any number of shards, writers, and layout helpers.

Records are read by :mod:`affectlens.videotag.tfrecord` (no TensorFlow). Video level: a
``tf.train.Example`` with ``id`` (2018) or ``video_id`` (2017), ``labels``, ``mean_rgb`` 1024 and
``mean_audio`` 128; frame level: a ``tf.train.SequenceExample`` with context ``id``/``labels`` and
feature lists ``rgb``/``audio`` holding one quantised uint8 byte string per frame.
"""
from __future__ import annotations

import csv
import glob
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from affectlens.errors import DataError
from affectlens.files import atomic_path, cache_dir
from affectlens.videotag.tfrecord import (  # noqa: F401  (re-exported: the room's one data module)
    MAX_RECORD_BYTES,
    TFRecordWriter,
    count_records,
    crc32c,
    crc32c_batch,
    dequantize,
    encode_example,
    encode_sequence_example,
    iter_records,
    masked_crc,
    parse_example,
    parse_sequence_example,
    quantize,
)

__all__ = [
    "crc32c", "crc32c_batch", "masked_crc", "iter_records", "TFRecordWriter",
    "parse_example", "parse_sequence_example", "encode_example", "encode_sequence_example",
    "quantize", "dequantize", "VideoLevelData", "read_video_level", "iter_video_level",
    "iter_frame_level", "FrameLevelVideo", "write_video_level", "write_frame_level",
    "shard_paths", "yt8m_split", "read_vocabulary", "multi_hot", "expand_shards", "ShardStream",
    "label_prior", "vocabulary_size", "RELEASES", "count_records", "decoded_shard",
]

NUM_CLASSES = 3862  # YouTube-8M 2018 vocabulary size
RELEASES = {"2018": 3862, "2017": 4716}  # classes of each release's vocabulary
RGB_DIM, AUDIO_DIM = 1024, 128

# ---------------------------------------------------------------------------- YouTube-8M readers

def _video_id(feats: dict, path: Path, offset: int) -> str:
    vid = feats.get("id", feats.get("video_id"))  # 2018 names it "id", 2017 "video_id"
    if not isinstance(vid, list) or not vid:
        raise DataError(path, f"record at byte offset {offset} has no 'id' (2018) or 'video_id' (2017) bytes feature")
    return bytes(vid[0]).decode("utf-8", "replace")


_EMPTY = "empty shard: no records (a real YouTube-8M shard is never empty)"


def _labels(feats: dict, path: Path, offset: int, num_classes: int | None = None) -> np.ndarray:
    lab = feats.get("labels", np.zeros(0, np.int64))
    if isinstance(lab, list):
        return np.zeros(0, np.int64)
    lab = np.asarray(lab, dtype=np.int64)
    if lab.size and (lab.min() < 0 or lab.max() >= 1 << 31):
        raise DataError(path, f"record at byte offset {offset}: label {int(lab[(lab < 0) | (lab >= 1 << 31)][0])} "
                              "is not a class index")
    if num_classes is not None and lab.size and lab.max() >= num_classes:
        raise DataError(path, f"record at byte offset {offset}: label {int(lab.max())} is outside the "
                              f"{num_classes}-class vocabulary (another release? see --release)")
    return lab


@dataclass
class VideoLevelData:
    """Video-level features of many videos: ``rgb`` (N, 1024), ``audio`` (N, 128), ``labels`` list."""

    ids: list[str]
    labels: list[np.ndarray]
    rgb: np.ndarray
    audio: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def features(self, modalities: Sequence[str] = ("rgb", "audio")) -> np.ndarray:
        """Concatenated features (N, D) of the chosen modalities, in the given order."""
        return np.concatenate([getattr(self, m) for m in modalities], axis=1)

    def targets(self, num_classes: int = NUM_CLASSES) -> np.ndarray:
        return multi_hot(self.labels, num_classes)


def multi_hot(labels: Sequence[np.ndarray], num_classes: int = NUM_CLASSES) -> np.ndarray:
    """List of label-id arrays → bool (N, num_classes)."""
    y = np.zeros((len(labels), num_classes), dtype=bool)
    rows = np.repeat(np.arange(len(labels)), [len(l) for l in labels])
    cols = np.concatenate([np.asarray(l, np.int64) for l in labels]) if len(labels) else np.zeros(0, np.int64)
    keep = (cols >= 0) & (cols < num_classes)
    y[rows[keep], cols[keep]] = True
    return y


def iter_video_level(paths: Iterable[str | Path], check_crc: bool = True, num_classes: int | None = None
                     ) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Stream ``(id, labels, mean_rgb (1024,), mean_audio (128,))`` from video-level shards; with
    ``num_classes`` a label outside the vocabulary is an error naming the shard and record."""
    for path in paths:
        path = Path(path)
        records = 0
        for offset, data in iter_records(path, check_crc):
            records += 1
            try:
                feats = parse_example(data)
            except (ValueError, IndexError, OverflowError) as e:
                raise DataError(path, f"record at byte offset {offset} is not a tf.train.Example ({e})") from None
            rgb, audio = feats.get("mean_rgb"), feats.get("mean_audio")
            if not isinstance(rgb, np.ndarray) or rgb.shape != (RGB_DIM,):
                raise DataError(path, f"record at byte offset {offset}: mean_rgb must be {RGB_DIM} floats")
            if not isinstance(audio, np.ndarray) or audio.shape != (AUDIO_DIM,):
                raise DataError(path, f"record at byte offset {offset}: mean_audio must be {AUDIO_DIM} floats")
            yield _video_id(feats, path, offset), _labels(feats, path, offset, num_classes), rgb, audio
        if not records:
            raise DataError(path, _EMPTY)


def read_video_level(paths: Sequence[str | Path], check_crc: bool = True,
                     num_classes: int | None = None) -> VideoLevelData:
    """Read video-level shards into memory (all 30 real shards: ~1 s); training and evaluation
    stream them instead (:class:`ShardStream`)."""
    ids, labels, rgb, audio = [], [], [], []
    for vid, lab, r, a in iter_video_level(paths, check_crc, num_classes):
        ids.append(vid)
        labels.append(lab)
        rgb.append(r)
        audio.append(a)
    if not ids:
        return VideoLevelData([], [], np.zeros((0, RGB_DIM), np.float32), np.zeros((0, AUDIO_DIM), np.float32))
    return VideoLevelData(ids, labels, np.stack(rgb), np.stack(audio))


SHARD_CACHE_FORMAT = 1


def decoded_shard(path: str | Path, num_classes: int | None = None, cache: str | Path | None = None) -> VideoLevelData:
    """One video-level shard read whole, through a cache of decoded shards.

    Parsing a record in Python costs ~0.3 ms, as long as a logistic model's whole training step per
    video; a decoded shard loads in about a millisecond. The cache (``cache``, default
    ``files.cache_dir("youtube8m")``) holds one ``.npz`` per shard, keyed by the shard's resolved
    path, size and modification time and the class count it was checked against, so an edited or
    replaced shard is decoded again; it takes as much disk as the shards themselves. Labels are
    checked against ``num_classes`` when the shard is decoded (the error names shard and record)."""
    path = Path(path)
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{num_classes}|{SHARD_CACHE_FORMAT}"
                       .encode()).hexdigest()[:16]
    file = Path(cache or cache_dir("youtube8m")) / f"{path.stem}_{key}.npz"
    if file.is_file():
        try:
            z = np.load(file, allow_pickle=False)
            ids, bounds = z["ids"].tolist(), z["label_offsets"]
            flat = z["labels"]
            return VideoLevelData(ids, [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])], z["rgb"], z["audio"])
        except (OSError, ValueError, KeyError):  # a damaged cache entry is decoded again
            pass
    data = read_video_level([path], num_classes=num_classes)
    bounds = np.cumsum([0] + [len(lab) for lab in data.labels])
    flat = np.concatenate(data.labels).astype(np.int64) if data.labels else np.zeros(0, np.int64)
    try:
        with atomic_path(file, suffix=".npz") as tmp:
            np.savez(tmp, ids=np.array(data.ids), labels=flat, label_offsets=bounds, rgb=data.rgb, audio=data.audio)
    except OSError:  # an unwritable cache only costs the parsing again
        pass
    return data


@dataclass
class FrameLevelVideo:
    """One frame-level video: ``rgb`` (T, 1024) and ``audio`` (T, 128), dequantised float32."""

    id: str
    labels: np.ndarray
    rgb: np.ndarray
    audio: np.ndarray


def _frames(lists: dict, name: str, dim: int, path: Path, offset: int, max_frames: int,
            quantized: bool = False) -> np.ndarray:
    frames = lists.get(name, [])[:max_frames]
    if not frames:
        return np.zeros((0, dim), np.uint8 if quantized else np.float32)
    raw = b"".join(bytes(f[0]) for f in frames if isinstance(f, list) and f)
    if len(raw) != len(frames) * dim:
        raise DataError(path, f"record at byte offset {offset}: '{name}' frames must be {dim} bytes each")
    q = np.frombuffer(raw, np.uint8).reshape(len(frames), dim)
    return q if quantized else dequantize(q)


def iter_frame_level(paths: Iterable[str | Path], max_frames: int = 300, check_crc: bool = True,
                     num_classes: int | None = None, quantized: bool = False) -> Iterator[FrameLevelVideo]:
    """Stream frame-level ``SequenceExample`` videos (quantised bytes → float32, starter-code rule;
    ``quantized`` keeps the uint8 bytes, a quarter of the memory, for a shuffle buffer)."""
    for path in paths:
        path = Path(path)
        records = 0
        for offset, data in iter_records(path, check_crc):
            records += 1
            try:
                context, lists = parse_sequence_example(data)
            except (ValueError, IndexError, OverflowError) as e:
                raise DataError(path, f"record at byte offset {offset} is not a SequenceExample ({e})") from None
            rgb = _frames(lists, "rgb", RGB_DIM, path, offset, max_frames, quantized)
            audio = _frames(lists, "audio", AUDIO_DIM, path, offset, max_frames, quantized)
            if len(rgb) != len(audio):
                raise DataError(path, f"record at byte offset {offset}: {len(rgb)} rgb vs {len(audio)} audio frames")
            yield FrameLevelVideo(_video_id(context, path, offset), _labels(context, path, offset, num_classes),
                                  rgb, audio)
        if not records:
            raise DataError(path, _EMPTY)


def write_video_level(path: str | Path, ids: Sequence[str], labels: Sequence[Sequence[int]],
                      rgb: np.ndarray, audio: np.ndarray) -> Path:
    """Write a video-level shard in the official layout (atomic)."""
    with TFRecordWriter(path) as w:
        for vid, lab, r, a in zip(ids, labels, rgb, audio):
            w.write(encode_example({"id": vid, "labels": np.asarray(lab, np.int64),
                                    "mean_rgb": np.asarray(r, np.float32), "mean_audio": np.asarray(a, np.float32)}))
    return Path(path)


def write_frame_level(path: str | Path, videos: Iterable[FrameLevelVideo]) -> Path:
    """Write a frame-level shard: quantised uint8 bytes per frame, as the official release (atomic)."""
    with TFRecordWriter(path) as w:
        for v in videos:
            rgb_q, audio_q = quantize(v.rgb), quantize(v.audio)
            w.write(encode_sequence_example(
                {"id": v.id, "labels": np.asarray(v.labels, np.int64)},
                {"rgb": [[r.tobytes()] for r in rgb_q], "audio": [[a.tobytes()] for a in audio_q]}))
    return Path(path)


# ---------------------------------------------------------------------------- layout helpers

def shard_paths(root: str | Path, pattern: str = "*.tfrecord") -> list[Path]:
    """Sorted shard files under ``root`` (a folder, or one file)."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DataError(root, "shard folder not found")
    paths = sorted(root.glob(pattern))
    if not paths:
        raise DataError(root, f"no shards matching {pattern}")
    return paths


def yt8m_split(root: str | Path, train_shards: int = 24) -> tuple[list[Path], list[Path]]:
    """The room's protocol on the real 30 shards: the first 24 train, the rest evaluate."""
    paths = shard_paths(root)
    return paths[:train_shards], paths[train_shards:]


def read_vocabulary(path: str | Path | None, num_classes: int = NUM_CLASSES, field: str = "Name") -> list[str | None]:
    """One column (``Name`` by default, or e.g. ``WikiDescription``) of the official ``vocabulary.csv``
    by class index (missing rows and empty cells → ``None``)."""
    names: list[str | None] = [None] * num_classes
    if path is None:
        return names

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "vocabulary file not found")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "Index" not in reader.fieldnames or field not in reader.fieldnames:
            raise DataError(path, f"vocabulary needs 'Index' and {field!r} columns")
        for line, row in enumerate(reader, start=2):
            try:
                idx = int(row["Index"])
            except (TypeError, ValueError):
                raise DataError(path, f"bad Index {row['Index']!r}", line=line) from None
            if 0 <= idx < num_classes:
                names[idx] = row[field] or None
    return names


def vocabulary_size(path: str | Path) -> int:
    """Classes of a vocabulary file: its largest ``Index`` + 1 (3,862 for 2018's, 4,716 for 2017's)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "vocabulary file not found")
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.DictReader(f)
        if not rows.fieldnames or "Index" not in rows.fieldnames:
            raise DataError(path, "vocabulary needs an 'Index' column")
        try:
            return 1 + max(int(r["Index"]) for r in rows)
        except (TypeError, ValueError) as e:
            raise DataError(path, f"bad Index ({e})") from None


def expand_shards(specs: Sequence[str | Path]) -> list[Path]:
    """Shard files from files, folders (their ``*.tfrecord``) and globs (``train*.tfrecord``), in
    the order given (each folder or glob sorted), duplicates dropped. A spec matching nothing is an
    error naming it."""
    out: list[Path] = []
    for spec in specs:
        text = str(spec)
        if any(c in text for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
            if not found:
                raise DataError(text, "no shard files match this pattern")
        else:
            found = shard_paths(spec)
        out += [p for p in found if p not in out]
    return out


# ---------------------------------------------------------------------------- streaming

def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ShardStream(IterableDataset):
    """A split of any size as a stream of ready batches ``{"x", "y", "lengths"?, "ids"}``.

    Shards are shuffled per epoch (from ``seed`` and the epoch the engine sets), dealt round-robin
    to every DDP rank and every DataLoader worker (each reads only its own shards), and videos pass
    through a shuffle buffer of ``buffer`` videos, so memory holds one buffer and one batch per
    worker, never the split. Use it with ``DataLoader(stream, batch_size=None)``.

    ``x`` is (B, D) for video-level shards and (B, T, D) with ``lengths`` (B,) for frame-level ones
    (frames kept as uint8 in the buffer, dequantised per batch); ``y`` is (B, num_classes) float.
    Under DDP (``distributed``) every rank must take the same number of training steps: each
    worker of a shuffled (training) stream then stops after the batches the smallest worker can
    fill, and there must be at least as many shards as workers in all. An evaluation stream is not
    cut; ``distributed=False`` reads every shard whatever the process group.
    """

    def __init__(self, paths: Sequence[str | Path], *, modalities: Sequence[str] = ("rgb", "audio"),
                 frame_level: bool = False, max_frames: int = 300, num_classes: int = NUM_CLASSES,
                 batch_size: int = 1024, shuffle: bool = False, buffer: int = 0, seed: int = 0,
                 distributed: bool = True, cache: bool | str | Path = False):
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise DataError("shards", "no shard files given")
        self.modalities, self.frame_level, self.max_frames = tuple(modalities), frame_level, max_frames
        self.num_classes, self.batch_size, self.shuffle, self.seed = num_classes, batch_size, shuffle, seed
        self.buffer = buffer or (256 if frame_level else 8192)
        self.epoch, self.distributed = 0, distributed
        self.cache = cache  # video level: read shards through decoded_shard (True: the default cache folder)
        self.counts = [count_records(p) for p in self.paths]  # headers only: cheap at any scale

    @property
    def videos(self) -> int:
        """Videos in the split (one epoch reads each once on a single process). Not ``__len__``:
        a DataLoader would take it for its number of batches."""
        return sum(self.counts)

    @property
    def dim(self) -> int:
        return sum(RGB_DIM if m == "rgb" else AUDIO_DIM for m in self.modalities)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _slots(self) -> tuple[list[Path], int | None]:
        """This worker's shards and, under DDP, how many batches every worker yields."""
        info = get_worker_info()
        wid, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rank, world = _rank_world() if self.distributed else (0, 1)
        slot, slots = rank * workers + wid, world * workers
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(len(self.paths)) if self.shuffle
                 else np.arange(len(self.paths)))
        if world == 1 or not self.shuffle:  # evaluation: a rank may read nothing, no steps to match
            return [self.paths[i] for i in order[slot::slots]], None
        if len(self.paths) < slots:
            raise DataError(self.paths[0].parent, f"{len(self.paths)} shards for {slots} readers "
                                                  f"({world} processes x {workers} workers): give more shards")
        per_slot = [sum(self.counts[i] for i in order[k::slots]) for k in range(slots)]
        return [self.paths[i] for i in order[slot::slots]], min(per_slot) // self.batch_size

    def _videos(self, shards: list[Path]) -> Iterator[tuple]:
        """``(id, labels, features)``: features (D,) float32, or (T, D) uint8 at frame level."""
        if not self.frame_level and self.cache:
            folder = None if self.cache is True else self.cache
            for shard in shards:
                data = decoded_shard(shard, self.num_classes, folder)  # an empty shard is an error there
                yield from zip(data.ids, data.labels, data.features(self.modalities))
        elif not self.frame_level:
            for vid, lab, rgb, audio in iter_video_level(shards, num_classes=self.num_classes):
                parts = {"rgb": rgb, "audio": audio}
                yield vid, lab, np.concatenate([parts[m] for m in self.modalities])
        else:
            for v in iter_frame_level(shards, self.max_frames, num_classes=self.num_classes, quantized=True):
                yield v.id, v.labels, np.concatenate([getattr(v, m) for m in self.modalities], axis=1)

    def _batch(self, videos: list[tuple]) -> dict:
        ids, labels, feats = zip(*videos)
        y = torch.from_numpy(multi_hot(labels, self.num_classes).astype(np.float32))
        if not self.frame_level:
            return {"x": torch.from_numpy(np.stack(feats)), "y": y, "ids": list(ids)}
        lengths = np.array([len(f) for f in feats], np.int64)
        x = np.zeros((len(feats), max(int(lengths.max()), 1), self.dim), np.uint8)
        for i, f in enumerate(feats):
            x[i, :len(f)] = f
        x = dequantize(x)
        x[np.arange(x.shape[1])[None, :] >= lengths[:, None]] = 0.0  # padding stays zero
        return {"x": torch.from_numpy(x), "lengths": torch.from_numpy(lengths), "y": y, "ids": list(ids)}

    def __iter__(self) -> Iterator[dict]:
        shards, limit = self._slots()
        if limit == 0:
            return
        info = get_worker_info()
        rank = _rank_world()[0] if self.distributed else 0
        rng = np.random.default_rng([self.seed, self.epoch, rank, info.id if info else 0, 1])
        pool: list[tuple] = []
        batch: list[tuple] = []
        yielded = 0

        def take(video):
            nonlocal yielded
            batch.append(video)
            if len(batch) == self.batch_size:
                yielded += 1
                out = self._batch(batch)
                batch.clear()
                return out
            return None

        def drained():
            order = rng.permutation(len(pool)) if self.shuffle else range(len(pool))
            for i in order:
                yield pool[i]

        for video in self._videos(shards):
            if self.shuffle:
                if len(pool) < self.buffer:
                    pool.append(video)
                    continue
                j = int(rng.integers(len(pool)))
                video, pool[j] = pool[j], video
            ready = take(video)
            if ready is not None:
                yield ready
                if limit is not None and yielded >= limit:
                    return
        for video in drained():
            ready = take(video)
            if ready is not None:
                yield ready
                if limit is not None and yielded >= limit:
                    return
        if batch and limit is None:
            yield self._batch(batch)


def label_prior(paths: Sequence[str | Path], num_classes: int = NUM_CLASSES, frame_level: bool = False,
                max_videos: int = 20_000) -> np.ndarray:
    """Share of videos carrying each label (float32 (num_classes,)), from the first ``max_videos``
    videos of ``paths`` (a quarter at frame level, whose records are 60x larger): the starting point
    of every class's bias."""
    counts, n = np.zeros(num_classes, np.int64), 0
    limit = max_videos // 4 if frame_level else max_videos
    videos = (iter_frame_level(paths, 1, num_classes=num_classes, quantized=True) if frame_level
              else iter_video_level(paths, num_classes=num_classes))
    for v in videos:
        lab = v.labels if frame_level else v[1]
        counts[np.unique(lab)] += 1
        n += 1
        if n >= limit:
            break
    return (counts / max(n, 1)).astype(np.float32)
