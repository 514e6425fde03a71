"""Anonymize faces in images, videos and folders: detect, track, mask, write to a new path.

A *method* is a small function ``(region, mask) -> region``: ``region`` is the face's RGB crop
``(h, w, 3)`` uint8 (box plus margin), ``mask`` its weight ``(h, w)`` float32 in [0, 1] (an
ellipse or the whole box); it returns the replacement crop, which is blended in by ``mask``
(``affectlens.privacy.masking``). The methods live in the typed mapping ``METHODS``; another
module adds one with ``register_method``.

Videos keep their resolution (odd sizes too), frame count, timestamps (each frame's ``pts``), frame
rate, time base and audio stream (packets copied where the output container takes them; see
``affectlens.media.writer.CONTAINERS``). An input cut short, or an output type that cannot hold
the input (a video as ``.jpg``, a variable frame rate in ``.avi``), is refused before any work.
Decoding, detection and encoding run in three threads that overlap (detection itself in two
worker threads; PyAV, onnxruntime and OpenCV release the GIL). Frames stay in the decoder's
yuv420p: the detector gets a small RGB copy made by the scaler in one pass, a frame without faces
goes to the encoder as decoded, and a frame with faces is changed in place, only inside the faces'
regions, in its own Y, U and V planes (``anonymize_planes``), so no full-size RGB frame or extra
copy is made. Detections pass through a ``FaceTracker`` so a face the detector misses for a few frames stays
covered.

Each output gets a JSON sidecar ``<output>.json`` (faces per frame, boxes, method, detector,
threshold, and the options that shaped the output), written last. A folder run skips a file whose
output and sidecar exist and were made from the same input with the same options (resume); one
made with other options is redone, and the result says so. A run first removes the temporary
files a killed run left beside its outputs (``affectlens.files.stale_temps``).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np

from affectlens.errors import AffectlensError, MediaError
from affectlens.faces.detect import PHOTO_SCALES, Detections
from affectlens.files import stale_temps, write_json
from affectlens.media import probe
from affectlens.media.image import IMAGE_EXTS, VIDEO_EXTS, read_image, write_image
from affectlens.media.writer import writable_video_exts
from affectlens.privacy.masking import (
    METHODS,
    MaskShape,
    Method,
    anonymize_frame,
    get_method,
    method_name,
    register_method,
)
from affectlens.privacy.options import (
    AnonymizeConfig,
    FileResult,
    detector_for,
    resume_state,
    sidecar_head,
    sidecar_path,
)
from affectlens.privacy.video import anonymize_video
from affectlens.report.console import progress as progress_bar
from affectlens.scale import check_output, run_batch

__all__ = ["IMAGE_EXTS", "METHODS", "VIDEO_EXTS", "AnonymizeConfig", "FileResult", "Method", "anonymize",
           "anonymize_batch", "anonymize_image", "anonymize_video", "plan_outputs", "register_method",
           "resume_state"]


def anonymize_image(src: Path, dst: Path, cfg: AnonymizeConfig = AnonymizeConfig(),
                    detector: Callable[[np.ndarray], Detections] | None = None) -> FileResult:
    """Anonymize one photo (metadata such as EXIF/GPS is not carried over)."""
    t0 = time.perf_counter()
    rgb = read_image(src)
    detector = detector or detector_for(cfg, PHOTO_SCALES)
    dets = detector(rgb)
    out = anonymize_frame(rgb, dets.boxes, get_method(cfg.method), cfg.mask, cfg.margin)
    sidecar_path(dst).unlink(missing_ok=True)  # a new output never sits beside an old output's sidecar
    write_image(dst, out)
    frames = [{"i": 0, "t": 0.0, "boxes": np.round(dets.boxes, 1).tolist(), "scores": np.round(dets.scores, 3).tolist()}]
    head = sidecar_head(cfg, src, dst, detector, {"kind": "image", "width": rgb.shape[1], "height": rgb.shape[0]})
    write_json(sidecar_path(dst), {**head, "faces_per_frame": [len(dets)], "frames": frames})
    return FileResult(str(src), str(dst), "done", "image", 1, len(dets), time.perf_counter() - t0)


# ---------------------------------------------------------------- many files


def _kind(path: Path) -> str:
    return "image" if path.suffix.lower() in IMAGE_EXTS else "video"


def _walk(folder: Path, exclude: Path | None) -> list[Path]:
    """Media files under ``folder`` (recursive, sorted), skipping hidden files and ``exclude``."""
    out = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        if exclude is not None and exclude in p.resolve().parents:
            continue
        if p.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS:
            out.append(p)
    return out


def plan_outputs(srcs: Sequence[str | Path], dst: str | Path) -> list[tuple[Path, Path]]:
    """Pair every input file with its output path; never an input path, never twice the same.

    One file and a ``dst`` with a file suffix: that file. Otherwise ``dst`` is a folder: a file
    goes to ``dst/name``; one input folder's tree is mirrored under ``dst``; with several inputs,
    a folder's tree goes under ``dst/<folder name>``. Refused here, before any work: an input
    folder without media, and an output that cannot hold its input (``_check_output``).
    """
    srcs, dst = [Path(s) for s in srcs], Path(dst)
    for s in srcs:
        if not s.exists():
            raise MediaError(s, "file not found")
        if s.is_dir() and s.resolve() == dst.resolve():
            raise MediaError(dst, f"output folder is the input folder ({s}): outputs would overwrite inputs")
    single_file = len(srcs) == 1 and srcs[0].is_file()
    if single_file and dst.suffix and not dst.is_dir():
        pairs = [(srcs[0], dst)]
    else:
        pairs = []
        for s in srcs:
            if s.is_file():
                pairs.append((s, dst / s.name))
            else:
                root = dst if len(srcs) == 1 else dst / s.resolve().name
                found = _walk(s, dst.resolve())
                if not found:
                    raise MediaError(s, f"is a folder without images or videos (looked for "
                                        f"{', '.join(sorted(IMAGE_EXTS | VIDEO_EXTS))}, recursively)")
                pairs += [(p, root / p.relative_to(s)) for p in found]
    inputs = {p.resolve() for p, _ in pairs}
    seen: set[Path] = set()
    for s, d in pairs:
        _check_output(s, d)
        r = d.resolve()
        if r in inputs:
            raise MediaError(d, f"output would overwrite an input ({s}); choose another --out")
        if r in seen:
            raise MediaError(d, "two inputs map to this one output; give them separate folders")
        seen.add(r)
    return pairs


def _check_output(src: Path, dst: Path) -> None:
    """Refuse, naming the input, an output whose extension cannot hold it: an image needs one of
    ``IMAGE_EXTS``, a video one of the containers ``VideoWriter`` writes."""
    ext = dst.suffix.lower()
    if _kind(src) == "image":
        if ext not in IMAGE_EXTS:
            raise MediaError(src, f"an image cannot be written as {dst} (use one of {', '.join(sorted(IMAGE_EXTS))})")
    elif ext not in writable_video_exts():
        raise MediaError(src, f"a video cannot be written as {dst} (use one of {', '.join(writable_video_exts())})")


def _prepare_outputs(pairs: Sequence[tuple[Path, Path]], before: float) -> None:
    """Before any work: refuse, in one line, an output folder that cannot be written (a file in its
    way, no permission); then remove what a killed run left beside these outputs, temporary files
    of our own pattern older than this run (a file being written now is never touched)."""
    for folder in sorted({d.parent for _, d in pairs}):
        check_output(folder, "dir")
    for p in stale_temps([f for _, d in pairs for f in (d, sidecar_path(d))], before):
        p.unlink(missing_ok=True)


def _run_one(src: Path, dst: Path, cfg: AnonymizeConfig, bar, detector) -> FileResult:
    if _kind(src) == "image":
        return anonymize_image(src, dst, cfg, detector)
    on_frame = None
    task = None
    if bar is not None and not bar.disable:  # shown: a bar per video, counting its frames

        task = bar.add_task(f"  {src.name}", total=probe(src).frame_count)
        on_frame = lambda n: bar.advance(task, n)  # noqa: E731
    try:
        return anonymize_video(src, dst, cfg, detector, on_frame)
    finally:
        if task is not None:
            bar.remove_task(task)


def anonymize_file(src: Path, dst_of: dict, cfg: AnonymizeConfig, setup: Callable[[], None] | None = None,
                   detector=None, bar=None) -> tuple[Path, dict]:
    """One file of a run (module level, so Ray workers can import it): the image or video driver.
    Returns its sidecar (written last: the batch runner's output) and the file's figures."""
    if setup is not None:
        setup()
    dst = dst_of[str(src)]
    r = _run_one(src, dst, cfg, bar, detector)
    return sidecar_path(dst), {"frames": r.frames, "faces": r.faces, "seconds": r.seconds}


def anonymize(src: str | Path | Sequence[str | Path], dst: str | Path, *, method: str | Method = "blur",
              mask: MaskShape = "ellipse", margin: float = 0.25, detector: str = "centerface",
              threshold: float = 0.2, resume: bool = True, progress: bool = False,
              errors: Literal["raise", "collect"] = "raise", face_detector=None, backend: str = "local",
              address: str | None = None, workers: int | None = None, setup: Callable[[], None] | None = None,
              **options) -> list[FileResult]:
    """Anonymize the faces in images, videos or folders (recursive) into ``dst``.

    ``dst`` is a file for one input file with a suffix, else a folder (see ``plan_outputs``); an
    output never replaces an input. ``options`` are further ``AnonymizeConfig`` fields
    (``det_size``, ``detect_every``, ``tracker``, ``crf``, ``threads``). With ``resume``, a file
    whose output was made from the same input with the same output options is skipped, and one
    made otherwise is redone (its result's ``note`` says why; see ``resume_state``).
    ``errors="collect"`` reports a failing file (or, among several inputs, a missing one) in its
    ``FileResult`` and goes on (the CLI's behaviour); ``"raise"`` raises its error. ``face_detector``: a callable ``rgb -> Detections``
    used instead of ``detector``. ``method``: a registered name or a function ``(region, mask) -> region``.

    The files go through the one batch runner (:func:`affectlens.scale.run_batch`): in this
    process (a bar per video's frames when ``progress``), or with ``backend="ray"`` one file per
    Ray task (``setup`` runs in each task first, e.g. registering a method whose models must be
    loaded in the worker); the outputs, sidecars, resume and results are the same.
    """
    started = time.time()
    cfg = AnonymizeConfig(method=method_name(method), mask=mask, margin=margin, detector=detector, threshold=threshold,
                          **options)
    if setup is None:
        get_method(cfg.method)  # an unknown method fails once, here, not once per file
    srcs = [Path(s) for s in ([src] if isinstance(src, (str, Path)) else src)]
    missing: list[FileResult] = []
    if errors == "collect" and len(srcs) > 1:  # a missing name among several is that one's failure only
        missing = [FileResult(str(s), "", "failed", _kind(s), error=f"{s}: file not found")
                   for s in srcs if not s.exists() and not s.is_symlink()]
        srcs = [s for s in srcs if s.exists() or s.is_symlink()]
    pairs = plan_outputs(srcs, dst) if srcs else []
    _prepare_outputs(pairs, started)
    dst_of = {str(s): d for s, d in pairs}
    state = {str(s): resume_state(s, d, cfg) for s, d in pairs} if resume else {}
    local = backend == "local"
    with progress_bar(enabled=progress) as bar:  # file names are shown literally, never as markup
        fn = partial(anonymize_file, dst_of=dst_of, cfg=cfg, setup=setup, detector=face_detector,
                     bar=bar if local else None)
        res = run_batch([s for s, _ in pairs], fn, lambda s: sidecar_path(dst_of[str(s)]), backend=backend,
                        address=address, num_workers=workers, resume=resume, description="files", display=bar,
                        up_to_date=lambda s, _side: state[str(s)][0], fail_fast=local and errors == "raise")
    if errors == "raise" and res.failed:  # a Ray task's failure comes back as a line
        raise AffectlensError(res.failed[0][1])
    kind = {str(s): _kind(s) for s, _ in pairs}
    figures = {str(s): d for s, d in res.details}
    rows: dict[str, FileResult] = {}
    for s, _ in res.done:
        f = figures.get(str(s), {})
        rows[str(s)] = FileResult(str(s), str(dst_of[str(s)]), "done", kind[str(s)], f.get("frames", 0),
                                  f.get("faces", 0), f.get("seconds", 0.0), note=state.get(str(s), (False, ""))[1])
    for s, _ in res.skipped:
        rows[str(s)] = FileResult(str(s), str(dst_of[str(s)]), "skipped", kind[str(s)])
    for s, reason in res.failed:
        rows[str(s)] = FileResult(str(s), str(dst_of[str(s)]), "failed", kind[str(s)], error=reason)
    return missing + [rows[str(s)] for s, _ in pairs]


def anonymize_batch(src: str | Path | Sequence[str | Path], dst: str | Path, *, backend: str = "ray",
                    address: str | None = None, workers: int | None = None, resume: bool = True,
                    progress: bool = False, setup: Callable[[], None] | None = None, **options) -> list[FileResult]:
    """:func:`anonymize` with Ray as the default backend and failures collected (one file per task,
    the same outputs, resume and per-file results in input order)."""
    return anonymize(src, dst, backend=backend, address=address, workers=workers, resume=resume, progress=progress,
                     setup=setup, errors="collect", **options)
