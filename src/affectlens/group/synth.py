"""Synthetic group-emotion videos (paper 000, §4.3) written as real mp4 files in the VGAF layout.

Each clip: a fixed background, 3–9 faces showing the clip's class moving over it (each face in
its own cell of a grid, so faces never cover each other), optional occluders that hide at most
``max_occlusion`` (10 %) of a face, measured on the generator's own masks, and a class-dependent
audio track. Faces come from a folder of expression-labelled images (FER2013 layout) or a
built-in procedural renderer whose mouth, brow and eye shapes carry the class; backgrounds from
a folder of images or procedural scenes; audio from a folder of class-labelled clips or
procedural class-dependent sound.

``cues="split"`` is the learning benchmark: faces tell Positive from the rest while the sound
tells Negative from the rest, so each modality carries only part of the class signal.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

import cv2
import numpy as np

from affectlens.errors import DataError
from affectlens.files import atomic_path
from affectlens.group.data import find_label_file, read_vgaf
from affectlens.media import load_audio, write_video
from affectlens.media.image import read_image
from affectlens.scale import run_batch

CLASSES = ("Positive", "Neutral", "Negative")  # VGAF labels 1, 2, 3
FER_TO_GROUP = {"happy": 0, "neutral": 1, "angry": 2, "disgust": 2, "fear": 2, "sad": 2,
                "positive": 0, "negative": 2}
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
AUDIO_EXT = {".wav", ".flac", ".mp3", ".m4a", ".ogg", ".mp4", ".mkv", ".avi", ".mov", ".webm"}
PAPER_BALANCE = (0.3016, 0.3471, 0.3513)  # VGAF training set: 802 / 923 / 934
CUE_POOLS = {  # clip class -> (classes its faces may show, classes its sound may come from)
    "full": {0: ((0,), (0,)), 1: ((1,), (1,)), 2: ((2,), (2,))},
    "split": {0: ((0,), (0, 1)), 1: ((1, 2), (0, 1)), 2: ((1, 2), (2,))},
}


@dataclass(frozen=True)
class SynthSpec:
    width: int = 224
    height: int = 224
    fps: int = 15
    seconds: float = 5.0
    sample_rate: int = 16_000
    min_faces: int = 3
    max_faces: int = 9
    max_occlusion: float = 0.10
    occluder_prob: float = 0.5
    cues: str = "full"

    @property
    def n_frames(self) -> int:
        return int(round(self.fps * self.seconds))


@dataclass
class Sources:
    """Optional real material: face images / audio files per class (0..2), background images."""
    faces: Optional[Dict[int, List[Path]]] = None
    backgrounds: Optional[List[Path]] = None
    audio: Optional[Dict[int, List[Path]]] = None


# ----------------------------------------------------------------------------- procedural face
def render_face(cls: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A procedural face (size, size, 4) RGBA uint8 whose mouth, brows and eyes show class ``cls``.

    Positive: smile or laugh; Neutral: straight mouth, level brows; Negative: angry (V brows,
    frown), sad (raised inner brows, frown) or fearful (wide eyes, open oval mouth).
    """
    s = 128  # draw at a canonical size, then resize with area averaging (anti-aliasing)
    img = np.zeros((s, s, 4), np.uint8)
    skin = np.clip(np.array([200, 160, 130]) * rng.uniform(0.45, 1.15) + rng.normal(0, 8, 3), 30, 255)
    hair = rng.integers(10, 120, 3)
    wr = rng.uniform(0.85, 1.05)
    cv2.ellipse(img, (64, 58), (int(50 * wr), 52), 0, 180, 360, (*hair.tolist(), 255), -1)
    cv2.ellipse(img, (64, 68), (int(44 * wr), 56), 0, 0, 360, (*skin.tolist(), 255), -1)
    kind = {0: rng.choice(["smile", "laugh"]), 1: "neutral", 2: rng.choice(["angry", "sad", "fear"])}[cls]
    _draw_eyes(img, kind, rng)
    _draw_brows(img, kind, rng, hair)
    cv2.line(img, (64, 66), (62, 80), (*(skin * 0.7).tolist(), 255), 2, cv2.LINE_AA)  # nose
    _draw_mouth(img, kind, rng)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def _draw_eyes(img, kind, rng):
    open_ = {"laugh": 0.5, "smile": 0.8, "fear": 1.5, "angry": 0.75, "sad": 0.8}.get(kind, 1.0)
    for x in (46, 82):
        cv2.ellipse(img, (x, 58), (9, max(2, int(5 * open_ * rng.uniform(0.9, 1.1)))), 0, 0, 360,
                    (250, 250, 250, 255), -1, cv2.LINE_AA)
        cv2.circle(img, (x, 58), 3, (30, 20, 20, 255), -1, cv2.LINE_AA)


def _draw_brows(img, kind, rng, hair):
    # (inner y, outer y): V-shape for anger, inner-raised for sadness/fear, high arch for joy
    inner, outer = {"angry": (52, 40), "sad": (38, 47), "fear": (36, 38), "smile": (42, 40),
                    "laugh": (40, 39), "neutral": (45, 45)}[kind]
    j = rng.integers(-1, 2)
    color = (*np.clip(hair * 0.6, 0, 255).tolist(), 255)
    cv2.line(img, (56, inner + j), (36, outer + j), color, 4, cv2.LINE_AA)
    cv2.line(img, (72, inner + j), (92, outer + j), color, 4, cv2.LINE_AA)


def _draw_mouth(img, kind, rng):
    half = int(rng.uniform(14, 20))
    xs = np.linspace(-half, half, 21)
    lip = (60, 40, 160, 255)
    if kind == "fear":
        cv2.ellipse(img, (64, 96), (8, 12), 0, 0, 360, (40, 10, 20, 255), -1, cv2.LINE_AA)
        return
    if kind == "laugh":  # open mouth: flat upper lip, deep lower curve, teeth
        lower = 96 + 14 * (1 - (xs / half) ** 2)
        pts = np.concatenate([np.stack([64 + xs, np.full_like(xs, 94)], 1), np.stack([64 + xs[::-1], lower[::-1]], 1)])
        cv2.fillPoly(img, [pts.astype(np.int32)], (40, 10, 20, 255), cv2.LINE_AA)
        cv2.rectangle(img, (64 - half + 4, 94), (64 + half - 4, 98), (245, 245, 245, 255), -1)
        return
    curve = {"smile": -rng.uniform(8, 12), "neutral": rng.uniform(-1, 1), "angry": rng.uniform(6, 9),
             "sad": rng.uniform(8, 11)}[kind]  # >0: corners down (frown), <0: corners up (smile)
    ys = 98 - curve * (1 - (xs / half) ** 2)  # image y grows downwards
    pts = np.stack([64 + xs, ys], 1)
    cv2.polylines(img, [pts.astype(np.int32)], False, lip, 4, cv2.LINE_AA)


def face_from_image(path: Path, size: int) -> np.ndarray:
    """An RGBA sprite from a face image: resized, with an elliptical alpha mask over the face."""
    img = cv2.resize(read_image(path), (size, size), interpolation=cv2.INTER_AREA)
    alpha = np.zeros((size, size), np.uint8)
    cv2.ellipse(alpha, (size // 2, size // 2), (int(size * 0.45), int(size * 0.5)), 0, 0, 360, 255, -1)
    return np.dstack([img, alpha])


# ----------------------------------------------------------------------------- backgrounds
def procedural_background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A class-independent scene: sky/floor gradient, blocks (buildings, furniture), lights."""
    top, bottom = rng.integers(40, 230, 3), rng.integers(20, 200, 3)
    ramp = np.linspace(0, 1, h)[:, None, None]
    img = (top * (1 - ramp) + bottom * ramp).repeat(w, 1).astype(np.uint8)
    horizon = int(h * rng.uniform(0.45, 0.75))
    img[horizon:] = (img[horizon:] * rng.uniform(0.5, 0.9)).astype(np.uint8)
    for _ in range(rng.integers(3, 9)):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, horizon))
        cv2.rectangle(img, (x0, y0), (x0 + int(rng.integers(w // 10, w // 3)), horizon),
                      rng.integers(20, 220, 3).tolist(), -1)
    for _ in range(rng.integers(0, 6)):
        cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(2, max(3, w // 20))),
                   rng.integers(150, 256, 3).tolist(), -1, cv2.LINE_AA)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(cv2.GaussianBlur(img, (3, 3), 0) + noise, 0, 255).astype(np.uint8)


def image_background(path: Path, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of a background image, resized to (h, w)."""
    img = read_image(path)
    ih, iw = img.shape[:2]
    scale = rng.uniform(0.7, 1.0)
    ch, cw = int(ih * scale), int(iw * scale)
    y0, x0 = int(rng.integers(0, ih - ch + 1)), int(rng.integers(0, iw - cw + 1))
    return cv2.resize(img[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_AREA)


# ----------------------------------------------------------------------------- occluders
def add_occluder(sprite: np.ndarray, max_share: float, rng: np.random.Generator):
    """Attach an opaque bar entering the face from one side, hiding at most ``max_share`` of it.

    Returns ``(occluder_rgba, share)``: the occluder as an RGBA layer the size of ``sprite`` and
    the exact share of face pixels it hides (found by growing the bar while the share fits).
    """
    face = sprite[..., 3] > 127
    area = face.sum()
    target = rng.uniform(0.02, max_share)
    side = int(rng.integers(4))
    s = sprite.shape[0]
    best = 0
    for k in range(1, s):  # largest bar depth whose hidden share stays under the target
        bar = _bar(s, side, k)
        if (face & bar).sum() / area > target:
            break
        best = k
    layer = np.zeros_like(sprite)
    if best:
        bar = _bar(s, side, best)
        layer[bar] = (*rng.integers(0, 256, 3).tolist(), 255)
    share = float((face & (layer[..., 3] > 127)).sum() / area)
    return layer, share


def _bar(s: int, side: int, k: int) -> np.ndarray:
    m = np.zeros((s, s), bool)
    if side == 0:
        m[:k] = True
    elif side == 1:
        m[-k:] = True
    elif side == 2:
        m[:, :k] = True
    else:
        m[:, -k:] = True
    return m


# ----------------------------------------------------------------------------- audio
def _band_noise(n: int, sr: int, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.normal(0, 1, n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec[(f < lo) | (f > hi)] = 0
    x = np.fft.irfft(spec, n)
    return x / (np.abs(x).max() + 1e-9)


def _bursts(t: np.ndarray, rng: np.random.Generator, rate: float, dur: tuple) -> np.ndarray:
    """A 0/1 gate with bursts at random times (about ``rate`` per second), smoothed edges."""
    gate = np.zeros_like(t)
    n_b = max(1, rng.poisson(rate * t[-1]))
    for start in rng.uniform(0, t[-1], n_b):
        gate[(t >= start) & (t < start + rng.uniform(*dur))] = 1.0
    k = 160
    return np.convolve(gate, np.ones(k) / k, mode="same")


def procedural_sound(cls: int, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Class-dependent sound, float32 mono in [-1, 1].

    Positive: a bright major arpeggio and laughter-like 5 Hz bursts of mid-band noise.
    Neutral: a soft low hum with slowly modulated murmur. Negative: a dissonant buzzing cluster
    with tremolo and irregular loud low-band shouts.
    """
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    if cls == 0:
        f0 = rng.uniform(260, 400)
        notes = f0 * np.array([1.0, 1.26, 1.5, 2.0])[(t * 4).astype(int) % 4]  # 0.25-s arpeggio notes
        tone = np.sin(2 * np.pi * np.cumsum(notes) / sr) * (1 - ((t * 4) % 1)) ** 2
        laugh = _band_noise(n, sr, 800, 3000, rng) * (np.sin(2 * np.pi * 5 * t) > 0.2) * _bursts(t, rng, 0.6, (0.4, 1.0))
        x = 0.6 * tone + 0.5 * laugh
    elif cls == 1:
        f0 = rng.uniform(90, 150)
        hum = np.sin(2 * np.pi * f0 * t) + 0.3 * np.sin(4 * np.pi * f0 * t)
        murmur = _band_noise(n, sr, 200, 1200, rng) * (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t))
        x = 0.3 * hum + 0.3 * murmur
    else:
        f0 = rng.uniform(110, 200)
        saw = sum(np.sin(2 * np.pi * f0 * r * k * t) / k for r in (1.0, 1.06, 1.41) for k in range(1, 6))
        shout = _band_noise(n, sr, 300, 1500, rng) * _bursts(t, rng, 0.8, (0.2, 0.6))
        x = 0.25 * saw * (0.7 + 0.3 * np.sin(2 * np.pi * 8 * t)) + 0.8 * shout
    x = x + rng.uniform(0.01, 0.08) * rng.normal(0, 1, n)  # room noise at a random level
    return (x / (np.abs(x).max() + 1e-9) * rng.uniform(0.3, 0.8)).astype(np.float32)


def _audio_from_file(path: Path, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    a = load_audio(path, sr=sr)
    n = int(round(seconds * sr))
    if len(a) == 0:
        raise DataError(path, "audio is empty")
    if len(a) < n:
        a = np.tile(a, int(np.ceil(n / len(a))))
    start = int(rng.integers(0, len(a) - n + 1))
    return a[start:start + n].astype(np.float32)


# ----------------------------------------------------------------------------- one clip
@dataclass
class ClipRender:
    frames: np.ndarray       # (T, H, W, 3) uint8 RGB
    audio: np.ndarray        # (samples,) float32
    face_classes: List[int]  # expression class drawn for each face
    sound_class: int
    occlusion: np.ndarray    # (T, n_faces): share of each face hidden, measured on the composited frame


def _grid(n: int):
    cols = int(np.ceil(np.sqrt(n)))
    return int(np.ceil(n / cols)), cols


def _face_sprite(c: int, size: int, rng, sources: Optional[Sources]) -> np.ndarray:
    if sources is not None and sources.faces and sources.faces.get(c):
        files = sources.faces[c]
        return face_from_image(files[int(rng.integers(len(files)))], size)
    return render_face(c, size, rng)


def _trajectory(cell, size: int, n_frames: int, rng) -> np.ndarray:
    """(T, 2) top-left corners moving with constant speed, bouncing inside the cell."""
    x0, y0, cw, ch = cell
    lo = np.array([x0, y0], float)
    span = np.maximum(np.array([cw, ch], float) - size, 0)
    pos = lo + rng.uniform(0, 1, 2) * span
    vel = rng.uniform(-1, 1, 2) * max(cw, ch) * 0.02
    out = np.empty((n_frames, 2))
    for i in range(n_frames):
        out[i] = pos
        pos = pos + vel
        for d in range(2):  # reflect at the cell walls
            if pos[d] < lo[d] or pos[d] > lo[d] + span[d]:
                vel[d] = -vel[d]
                pos[d] = np.clip(pos[d], lo[d], lo[d] + span[d])
    return out.round().astype(int)


def render_clip(label: int, spec: SynthSpec, rng: np.random.Generator, sources: Optional[Sources] = None) -> ClipRender:
    """Render one synthetic clip of class ``label`` (0 Positive, 1 Neutral, 2 Negative)."""
    h, w, t_n = spec.height, spec.width, spec.n_frames
    if sources is not None and sources.backgrounds:
        bg = image_background(sources.backgrounds[int(rng.integers(len(sources.backgrounds)))], h, w, rng)
    else:
        bg = procedural_background(h, w, rng)
    face_pool, sound_pool = CUE_POOLS[spec.cues][label]
    n = int(rng.integers(spec.min_faces, spec.max_faces + 1))
    rows, cols = _grid(n)
    ch, cw = h // rows, w // cols
    cells = rng.permutation(rows * cols)[:n]
    layers = []
    for cell in cells:
        c = int(rng.choice(face_pool))
        size = int(min(ch, cw) * rng.uniform(0.65, 0.9))
        sprite = _face_sprite(c, size, rng, sources)
        occ = add_occluder(sprite, spec.max_occlusion, rng)[0] if rng.uniform() < spec.occluder_prob else None
        box = ((cell % cols) * cw, (cell // cols) * ch, cw, ch)
        layers.append((c, sprite, occ, _trajectory(box, size, t_n, rng)))
    frames, occlusion = _composite(bg, layers, t_n)
    sound = int(rng.choice(sound_pool))
    if sources is not None and sources.audio and sources.audio.get(sound):
        files = sources.audio[sound]
        audio = _audio_from_file(files[int(rng.integers(len(files)))], spec.seconds, spec.sample_rate, rng)
    else:
        audio = procedural_sound(sound, spec.seconds, spec.sample_rate, rng)
    return ClipRender(frames, audio, [lay[0] for lay in layers], sound, occlusion)


def _paste(frame: np.ndarray, owner: np.ndarray, rgba: np.ndarray, xy, ident: int) -> None:
    x, y = xy
    s = rgba.shape[0]
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    region = frame[y:y + s, x:x + s]
    region[:] = (rgba[..., :3] * a + region * (1 - a)).astype(np.uint8)
    owner[y:y + s, x:x + s][rgba[..., 3] > 127] = ident


def _composite(bg: np.ndarray, layers, n_frames: int):
    """Frames and per-face hidden shares from an owner map (which layer is on top at each pixel)."""
    frames = np.empty((n_frames, *bg.shape), np.uint8)
    occlusion = np.zeros((n_frames, len(layers)))
    for t in range(n_frames):
        frame, owner = bg.copy(), np.full(bg.shape[:2], -1, np.int32)
        for i, (_, sprite, _, traj) in enumerate(layers):
            _paste(frame, owner, sprite, traj[t], i)
        for i, (_, _, occ, traj) in enumerate(layers):
            if occ is not None:
                _paste(frame, owner, occ, traj[t], -2 - i)
        for i, (_, sprite, _, traj) in enumerate(layers):
            x, y = traj[t]
            s = sprite.shape[0]
            face = sprite[..., 3] > 127
            visible = (owner[y:y + s, x:x + s] == i) & face
            occlusion[t, i] = 1.0 - visible.sum() / face.sum()
        frames[t] = frame
    return frames, occlusion


# ----------------------------------------------------------------------------- sources
def _class_of_folder(name: str) -> Optional[int]:
    low = name.lower()
    if low in FER_TO_GROUP:
        return FER_TO_GROUP[low]
    return {"1": 0, "2": 1, "3": 2}.get(low)


def class_folders(root: Path, exts: set) -> Dict[int, List[Path]]:
    """Files per group class from class-named sub-folders (FER2013 names, Positive/Neutral/Negative
    or 1/2/3). A FER2013 root with ``train/`` uses only ``train/`` (never its test images)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "folder not found")
    if (root / "train").is_dir():
        root = root / "train"
    out: Dict[int, List[Path]] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        c = _class_of_folder(sub.name)
        if c is None:
            continue  # e.g. FER2013's "surprise", which has no group valence
        files = sorted(p for p in sub.rglob("*") if p.suffix.lower() in exts)
        out.setdefault(c, []).extend(files)
    if not any(out.values()):
        raise DataError(root, "no class-named sub-folders with files (expected e.g. happy/ neutral/ angry/ "
                              "or Positive/ Neutral/ Negative/)")
    return out


def load_sources(faces: Optional[Path] = None, backgrounds: Optional[Path] = None,
                 audio: Optional[Path] = None) -> Sources:
    """Real material for the generator; ``audio`` is class folders or a VGAF-layout folder."""
    bgs = None
    if backgrounds is not None:
        bgs = sorted(p for p in Path(backgrounds).rglob("*") if p.suffix.lower() in IMAGE_EXT)
        if not bgs:
            raise DataError(backgrounds, "no background images found")
    audio_map = None
    if audio is not None:
        if find_label_file(Path(audio), required=False) is not None:
            audio_map = {}
            for item in read_vgaf(Path(audio), on_error="skip").items:
                audio_map.setdefault(item.label, []).append(item.path)
        else:
            audio_map = class_folders(Path(audio), AUDIO_EXT)
    return Sources(faces=class_folders(Path(faces), IMAGE_EXT) if faces is not None else None,
                   backgrounds=bgs, audio=audio_map)


# ----------------------------------------------------------------------------- datasets
def plan_labels(count: int, balance: Sequence[float], seed: int) -> np.ndarray:
    """Exactly ``count`` labels with class shares as close to ``balance`` as integers allow."""
    p = np.asarray(balance, dtype=float)
    p = p / p.sum()
    n = np.floor(p * count).astype(int)
    for i in np.argsort(-(p * count - n))[: count - n.sum()]:
        n[i] += 1
    labels = np.repeat(np.arange(len(p)), n)
    return np.random.default_rng(seed).permutation(labels)


def write_clip(path: Path, clip: ClipRender, spec: SynthSpec) -> Path:
    return write_video(path, clip.frames, spec.fps, audio=clip.audio, sample_rate=spec.sample_rate)


def generate_dataset(out: Path, count: int, spec: SynthSpec = SynthSpec(), balance: Sequence[float] = (1, 1, 1),
                     sources: Optional[Sources] = None, seed: int = 0, prefix: str = "synt",
                     progress: bool = True, *, backend: str = "local", address: Optional[str] = None,
                     num_workers: Optional[int] = None) -> dict:
    """Write ``count`` clips to ``out/clips/`` and ``out/labels.txt`` (``Vid_name Label``, 1..3).

    Clip ``i`` depends only on ``(seed, i)`` and goes through the one batch runner
    (:func:`affectlens.scale.run_batch`, locally or over Ray), so an interrupted run resumes by
    skipping the clips already on disk and a clip that fails costs only itself. Returns a summary
    with class counts and the largest hidden share of any face.
    """
    out = Path(out)
    clip_dir = out / "clips"
    clip_dir.mkdir(parents=True, exist_ok=True)
    labels = plan_labels(count, balance, seed)
    items = [ClipJob(i, int(labels[i])) for i in range(count)]
    res = run_batch(items, partial(render_one, clip_dir=clip_dir, spec=spec, sources=sources, seed=seed, prefix=prefix),
                    partial(clip_path, clip_dir=clip_dir, prefix=prefix), backend=backend, address=address,
                    num_workers=num_workers, description="synth group", progress=progress)
    written = {i for (i, _), _ in res.done + res.skipped}
    rows = [f"{clip_path(item, clip_dir, prefix).name} {label + 1}" for item in items if item[0] in written
            for label in [item[1]]]
    _write_labels(out / "labels.txt", rows)
    counts = {CLASSES[c]: int((labels == c).sum()) for c in range(3)}
    return {"out": str(out), "clips": len(rows), "written_now": len(res.done), "class_counts": counts,
            "max_occlusion_written_now": max((d["occlusion"] for _, d in res.details), default=0.0),
            "failed": res.failure_lines()}


class ClipJob(NamedTuple):
    """Clip ``index`` of a synthetic set, of class ``label`` (0 Positive, 1 Neutral, 2 Negative)."""

    index: int
    label: int

    def __str__(self) -> str:  # how a batch report names it
        return f"clip {self.index}"


def clip_path(item: ClipJob, clip_dir: Path, prefix: str) -> Path:
    """Where clip ``item = (index, label)`` goes: ``clips/<prefix>_<index:05d>.mp4``."""
    return Path(clip_dir) / f"{prefix}_{item[0]:05d}.mp4"


def render_one(item: ClipJob, clip_dir: Path, spec: SynthSpec, sources: Optional[Sources], seed: int,
               prefix: str) -> tuple[Path, dict]:
    """Render and write one clip (module level, for Ray); its largest hidden share of a face is an extra."""
    i, label = item
    clip = render_clip(label, spec, np.random.default_rng([seed, i]), sources)
    return write_clip(clip_path(item, clip_dir, prefix), clip, spec), {"occlusion": float(clip.occlusion.max())}


def _write_labels(path: Path, rows: List[str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("Vid_name Label\n" + "".join(r + "\n" for r in rows), encoding="utf-8")


def write_long_video(path: Path, labels: Sequence[int], spec: SynthSpec = SynthSpec(),
                     sources: Optional[Sources] = None, seed: int = 0) -> Path:
    """One continuous video made of ``spec.seconds``-long segments of the given classes (for timelines)."""
    clips = [render_clip(int(c), spec, np.random.default_rng([seed, 10_000 + i]), sources) for i, c in enumerate(labels)]
    frames = np.concatenate([c.frames for c in clips])
    audio = np.concatenate([c.audio for c in clips])
    return write_video(path, frames, spec.fps, audio=audio, sample_rate=spec.sample_rate)
