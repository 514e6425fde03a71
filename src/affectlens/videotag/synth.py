"""Synthetic stand-ins, written in the real formats, for the parts of YouTube-8M we cannot reach.

* **Video text** (YouTube-8M-Text was never reachable): titles and keywords keyed by the *real*
  shards' video ids. Each label contributes words from its vocabulary row: with probability
  ``leak`` its own name words (label leakage), otherwise words of its Wikipedia description
  (related but not the label itself); distractor words, numbers, symbols and mixed case are added
  so the preprocessing has work to do. Labels missing from ``vocabulary_partial.csv`` get stable
  pseudo-words. ``coverage`` is the share of videos with any text (≈ 2/3 in the paper).
* **Frame-level features**: per-video frame sequences whose mean is the real video-level
  feature, plus a slow drift and frame noise, written as quantised ``SequenceExample`` records.
* **Demo features**: tiny video-level shards with class prototypes (for a sub-minute demo).

Everything written here is marked synthetic (a ``synthetic`` flag per text row and a
``SYNTHETIC.json`` beside the outputs).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np

from affectlens.files import write_json
from affectlens.videotag import data as D
from affectlens.videotag.text import write_videotext

__all__ = ["label_lexicon", "synth_videotext", "synth_frame_level", "synth_video_level"]

DISTRACTORS = ("video", "official", "hd", "new", "best", "funny", "live", "full", "episode", "part",
               "my", "first", "time", "review", "how", "to", "vs", "top", "music", "world", "amazing",
               "day", "show", "tutorial", "channel", "subscribe", "vlog", "highlights", "trailer", "cover",
               "and", "the", "with", "of", "in")
_WORD = re.compile(r"[A-Za-z]{3,}")
_DESC_STOP = frozenset("the and for with that this from are was were which also has have its been "
                       "their they other such used into can more most some than who when where one".split())


def label_lexicon(vocabulary: str | Path | None, num_classes: int = D.NUM_CLASSES, per_label: int = 12
                  ) -> tuple[list[list[str]], list[list[str]]]:
    """For each class: (name words, related description words). Missing rows → pseudo-words."""
    names: list[list[str]] = [(n or "").split() for n in D.read_vocabulary(vocabulary, num_classes)]
    related: list[list[str]] = [[] for _ in range(num_classes)]
    descriptions = D.read_vocabulary(vocabulary, num_classes, "WikiDescription") if vocabulary is not None else []
    for i, text in enumerate(descriptions):
        own = {w.lower() for w in names[i]}
        seen: list[str] = []
        for w in (w.lower() for w in _WORD.findall(text or "")):
            if w not in own and w not in _DESC_STOP and w not in seen:
                seen.append(w)
        related[i] = seen[:per_label]
    for i in range(num_classes):
        if not names[i]:  # stable letters-only pseudo-words (preprocessing drops digits)
            names[i] = [f"lbl{_letters(i)}"]
        if not related[i]:
            related[i] = [f"rel{_letters(i)}{c}" for c in "abcdefgh"]
    return names, related


def _letters(i: int) -> str:
    out = ""
    for _ in range(3):
        out = "abcdefghijklmnopqrstuvwxyz"[i % 26] + out
        i //= 26
    return out


def _text_for(labels, names, related, rng, leak: float) -> tuple[str, list[str]]:
    words: list[str] = []
    for l in labels:
        words.extend(names[l] if rng.random() < leak else list(rng.choice(related[l], size=min(3, len(related[l])),
                                                                         replace=False)))
    n_noise = int(rng.integers(2, 6))
    noise = list(rng.choice(DISTRACTORS, size=n_noise))
    title_words = words[:6] + noise[:3]
    rng.shuffle(title_words)
    title = " ".join(w.capitalize() if rng.random() < 0.5 else w for w in title_words)
    title += rng.choice(["", " !!", " - HD", " (2017)", " | part 2", "?"])
    kw_words = words + noise
    rng.shuffle(kw_words)
    keywords, i = [], 0
    while i < len(kw_words):  # tags of 1–2 words, some with numbers/punctuation
        k = int(rng.integers(1, 3))
        tag = " ".join(kw_words[i:i + k])
        if rng.random() < 0.2:
            tag = tag.upper() + rng.choice(["!", " 2018", "#", ","])
        keywords.append(tag)
        i += k
    return title, keywords


def synth_videotext(shards: Sequence[Path], out: str | Path, vocabulary: str | Path | None = None,
                    leak: float = 0.3, coverage: float = 0.67, seed: int = 0) -> Path:
    """Write ``out`` (JSON lines) with a synthetic title and keywords for each real video id."""
    rng = np.random.default_rng(seed)
    names, related = label_lexicon(vocabulary)
    rows = []
    for vid, labels, _, _ in D.iter_video_level(shards):
        if rng.random() >= coverage:
            continue
        title, keywords = _text_for([int(l) for l in labels if 0 <= l < len(names)], names, related, rng, leak)
        rows.append({"id": vid, "title": title, "keywords": keywords})
    out = Path(out)
    write_videotext(out, rows, synthetic=True)
    write_json(out.with_suffix(".SYNTHETIC.json"), {
        "synthetic": True, "what": "titles/keywords generated from label names (+description words, distractors)",
        "leak": leak, "coverage": coverage, "seed": seed, "videos_with_text": len(rows),
        "vocabulary": str(vocabulary) if vocabulary else None})
    return out


def synth_frame_level(shards: Sequence[Path], out_dir: str | Path, frames: int = 30, seed: int = 0,
                      max_videos: int | None = None) -> list[Path]:
    """One frame-level shard per input shard: frames around each real video's mean features."""
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, count = [], 0
    for shard in shards:
        videos = []
        for vid, labels, rgb, audio in D.iter_video_level([shard]):
            if max_videos is not None and count >= max_videos:
                break
            t = int(rng.integers(max(2, frames // 2), frames + 1))
            videos.append(D.FrameLevelVideo(vid, labels, _frames(rgb, t, rng), _frames(audio, t, rng)))
            count += 1
        if videos:
            written.append(D.write_frame_level(out_dir / f"synthetic_frames_{Path(shard).stem}.tfrecord", videos))
    write_json(out_dir / "SYNTHETIC.json", {"synthetic": True, "frames": frames, "seed": seed,
                                            "what": "frame-level features = real video-level mean + drift + noise"})
    return written


def _frames(mean: np.ndarray, t: int, rng) -> np.ndarray:
    drift = np.linspace(-1, 1, t)[:, None] * rng.normal(0, 0.15, mean.shape)[None, :]
    noise = rng.normal(0, 0.25, (t, mean.shape[0]))
    x = mean[None, :] + drift + noise
    return (x - x.mean(0, keepdims=True) + mean[None, :]).astype(np.float32)  # (T, D), mean = video mean


def synth_video_level(out_dir: str | Path, num_shards: int = 4, videos_per_shard: int = 150,
                      num_classes: int = 40, seed: int = 0, noise: float = 2.0) -> list[Path]:
    """Tiny video-level shards: features = sum of the labels' prototypes + noise (3,862-class ids)."""
    rng = np.random.default_rng(seed)
    classes = rng.choice(D.NUM_CLASSES, size=num_classes, replace=False)
    proto_rgb = rng.normal(0, 1, (num_classes, D.RGB_DIM)).astype(np.float32) / 4
    proto_audio = rng.normal(0, 1, (num_classes, D.AUDIO_DIM)).astype(np.float32) / 4
    prior = 1.0 / (np.arange(num_classes) + 3.0)
    prior /= prior.sum()
    out_dir = Path(out_dir)
    paths = []
    for s in range(num_shards):
        ids, labels, rgb, audio = [], [], [], []
        for v in range(videos_per_shard):
            k = rng.choice(num_classes, size=int(rng.integers(1, 4)), replace=False, p=prior)
            ids.append(f"s{s:02d}{v:04d}")
            labels.append(np.sort(classes[k]))
            rgb.append(proto_rgb[k].sum(0) + rng.normal(0, noise, D.RGB_DIM))
            audio.append(proto_audio[k].sum(0) + rng.normal(0, noise * 0.6, D.AUDIO_DIM))
        paths.append(D.write_video_level(out_dir / f"synthetic{s:04d}.tfrecord", ids, labels,
                                         np.array(rgb, np.float32), np.array(audio, np.float32)))
    write_json(out_dir / "SYNTHETIC.json", {"synthetic": True, "what": "class-prototype video-level features",
                                            "classes": classes.tolist(), "seed": seed})
    return paths
