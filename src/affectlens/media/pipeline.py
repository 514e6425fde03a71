"""decode -> fn(frame) -> encode, each in its own thread, keeping every frame's timing.

A video job runs three stages that overlap (PyAV releases the GIL while it decodes and encodes):
``decode_stage`` fills a queue with decoded ``av.VideoFrame``s, the caller's thread takes them
from ``stage_items`` and puts what it makes of them on a second queue, which ``encode_stage``
drains into a ``VideoWriter``. Bounded queues (``FRAME_QUEUE``) keep memory flat; ``put`` gives up when ``stop``
is set, so a stage whose partner died never blocks forever, and the first error of any stage is
raised in the caller's thread. ``Background`` runs per-frame work (face detection) ahead of need
at a lower priority, and ``opencv_single_threaded`` keeps OpenCV from competing with the stages.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from pathlib import Path

import cv2
from av.video.frame import PictureType

from affectlens.media.video import decoded_frames, probe, target_hw, to_rgb
from affectlens.media.writer import VideoWriter

END = object()  # the last item a queue carries
FRAME_QUEUE = 8  # decoded frames waiting for the caller; finished frames waiting for the encoder
LARGE_BUFFER = 128 * 1024  # bytes: buffers this large get their own mapping (steady_heap)
M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def steady_heap() -> bool:
    """Keep a long video job's memory flat: glibc serves buffers of ``LARGE_BUFFER`` bytes or more
    from their own mappings, returned to the system when freed. True when set; a no-op (False) on
    other C libraries or when the user chose ``MALLOC_MMAP_THRESHOLD_`` themselves.

    Written by hand because no library does it. glibc starts with the same 128 KiB threshold but
    raises it (up to 32 MiB) each time such a mapping is freed, after which frames and detector
    outputs, made in one thread and freed in another, land in per-thread arenas that fragment and
    never shrink: anonymizing grew ~900 bytes a frame (+15 to +19 MB per hour of 5 fps video on a
    30-minute clip), though Python's own heap (tracemalloc) stayed flat. Fixing the threshold made
    it flat (anonymous RSS at each tenth of that run 435 434 436 436 436 435 436 436 436 MB); calling
    ``malloc_trim`` every 2 s instead only halved the growth. ``bench/long_video_memory.py``
    measures it. The price is speed: freed memory goes back to the system and is faulted in again,
    and anonymize ran at a median 164 vs 180 fps without it (3-minute 640×360 10 fps clip, seven
    interleaved runs each; a 1 MiB threshold cost as much). Whoever prefers the speed sets
    ``MALLOC_MMAP_THRESHOLD_`` (e.g. to glibc's dynamic default's ceiling, 33554432) and is left
    alone. The setting is process-wide, so once a process is enough.
    """
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    mallopt = _mallopt()
    return mallopt is not None and mallopt(M_MMAP_THRESHOLD, LARGE_BUFFER) == 1


@functools.cache
def _mallopt():
    """glibc's ``mallopt``, looked up once (``find_library`` runs ``ldconfig``), or None."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


class Stage(threading.Thread):
    """A daemon thread that runs ``fn`` and keeps its exception for the caller's thread."""

    def __init__(self, fn: Callable[[], None], name: str):
        super().__init__(name=name, daemon=True)
        self.fn, self.error = fn, None

    def run(self) -> None:
        try:
            self.fn()
        except BaseException as e:  # noqa: BLE001 - kept and re-raised in the caller's thread
            self.error = e


def put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put unless ``stop`` is set (so a stage never blocks forever on a dead consumer)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def encode_frame(writer, frame) -> None:
    """Encode a decoded (or rebuilt) ``av.VideoFrame`` with ``writer`` (a ``VideoWriter``), keeping
    its ``pts``. The decoder's picture type is cleared so the encoder picks frame types itself (as
    ``ffmpeg`` does); PyAV converts a frame whose pixel format differs from the stream's."""
    frame.pict_type = PictureType.NONE
    writer.write_frame(frame)


def decode_stage(src: Path, q: queue.Queue, stop: threading.Event) -> Callable[[], None]:
    """Every decoded frame of ``src`` onto ``q``, then ``END``. Every video job starts here, so this
    is where its memory is kept flat (``steady_heap``)."""
    steady_heap()

    def run() -> None:
        try:
            for frame in decoded_frames(src):
                if not put(q, frame, stop):
                    return
        finally:
            put(q, END, stop)
    return run


def encode_stage(writer, q: queue.Queue, stop: threading.Event) -> Callable[[], None]:
    """Everything on ``q`` into ``writer`` until ``END``: ``av.VideoFrame``s as they are, ``(rgb,
    pts)`` pairs (frames rebuilt in RGB) through ``writer.write``."""
    def run() -> None:
        try:
            while (item := q.get()) is not END:
                if isinstance(item, tuple):
                    writer.write(item[0], pts=item[1])
                else:
                    encode_frame(writer, item)
        except BaseException:
            stop.set()
            raise
    return run


def halt(stages: Sequence[Stage], stop: threading.Event, timeout: float = 5.0) -> None:
    """Tell every stage to stop and wait for those still running (an encoder stops writing before
    its output is discarded)."""
    stop.set()
    for s in stages:
        if s.is_alive():
            s.join(timeout=timeout)


def stage_items(q: queue.Queue, stages: Sequence[Stage]) -> Iterator:
    """Items from the decode stage's queue; raises a stage's error as soon as it shows."""
    while True:
        try:
            item = q.get(timeout=0.1)
        except queue.Empty:
            for s in stages:
                if s.error is not None:
                    raise s.error
            continue
        if item is END:
            for s in stages:
                if s.error is not None:
                    raise s.error
            return
        yield item


def lower_priority(nice: int) -> Callable[[], None]:
    """A thread initializer that adds ``nice`` to the calling thread's niceness (Linux keeps one per
    thread; elsewhere ``setpriority`` would touch the whole process, so it does nothing there)."""
    def init() -> None:
        if nice > 0 and sys.platform.startswith("linux"):
            tid = threading.get_native_id()
            with suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    return init


class Background:
    """Runs ``fn`` ahead of need in ``workers`` threads at a lower CPU priority (``nice``).

    The decoder's and encoder's threads then go first, and the work here (face detection, say)
    fills the moments they leave a core idle (libx264's frame threads leave about a quarter of two
    cores idle at 720p).
    A result still missing after ``patience`` seconds (or twice the quickest job so far, for a slow
    ``fn``; see ``_wait``) is computed by the caller itself at its own priority, so other programs
    keeping the machine busy cannot starve the pipeline (a job already running is left to finish
    and its result dropped). ``patience=None`` always waits.
    """

    def __init__(self, fn: Callable, workers: int, nice: int = 0, patience: float | None = None,
                 name: str = "background"):
        self.fn, self.patience = fn, patience
        self.starved, self.quickest = False, None  # seconds one job took, at best
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix=name, initializer=lower_priority(nice))

    def _run(self, *args):
        t0 = time.perf_counter()
        out = self.fn(*args)
        took = time.perf_counter() - t0
        self.quickest = took if self.quickest is None else min(self.quickest, took)
        return out

    def _wait(self) -> float | None:
        """How long to wait for a job: ``patience`` or twice the quickest job; after a job was not
        ready in time (workers starved), only as long as one job takes, until one is ready again."""
        if self.patience is None or self.quickest is None:
            return self.patience
        return self.quickest if self.starved else max(self.patience, 2 * self.quickest)

    def submit(self, *args) -> tuple:
        return args, self.pool.submit(self._run, *args)

    def result(self, job: tuple):
        args, fut = job
        if not wait([fut], timeout=self._wait()).done:
            fut.cancel()  # dropped if it has not started
            self.starved = True
            return self._run(*args)
        self.starved = False
        return fut.result()

    def close(self) -> None:
        self.pool.shutdown(wait=self.patience is None, cancel_futures=True)  # a late job may finish alone


@contextmanager
def opencv_single_threaded() -> Iterator[None]:
    """OpenCV's own thread pool off for the block, restored after. A video's stages already keep the
    cores busy; OpenCV splitting each small face crop across threads only doubled the masking's CPU
    time at no gain in wall time (720p, 6 faces a frame: 9.7 vs 5.7 CPU ms a frame)."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def transform_video(src: str | Path, dst: str | Path, fn: Callable, **writer_options) -> Path:
    """The one public decode → ``fn`` → encode: write ``dst`` with every frame of ``src`` replaced by
    ``fn(rgb, t)`` (``rgb`` the displayed ``(H, W, 3)`` uint8 frame, rotation applied; ``t`` its time in
    seconds; returns a frame of the same size), keeping each frame's ``pts``, the frame rate, time
    base and audio (``VideoWriter.like``). Decoding and encoding run in their own threads and
    overlap with ``fn``; on any error (or Ctrl-C) the half-written output is discarded, so ``dst``
    exists only when the whole video went through. ``writer_options`` go to the ``VideoWriter``
    (``crf``, …). Anonymization drives the same stages itself, to hold frames back for its tracker.
    """
    src, dst = Path(src), Path(dst)
    info = probe(src)
    hw = target_hw(None, info.rotation, info.width, info.height)
    writer = VideoWriter.like(src, dst, **writer_options)
    stop = threading.Event()
    q_in: queue.Queue = queue.Queue(maxsize=FRAME_QUEUE)
    q_out: queue.Queue = queue.Queue(maxsize=FRAME_QUEUE)
    stages = [Stage(decode_stage(src, q_in, stop), "decode"), Stage(encode_stage(writer, q_out, stop), "encode")]
    try:
        for s in stages:
            s.start()
        for frame in stage_items(q_in, stages):
            t = float(frame.pts * info.time_base) - info.start_time
            if not put(q_out, (fn(to_rgb(frame, hw, info.rotation), t), frame.pts), stop):
                break
        put(q_out, END, stop)
        stages[1].join()
        for s in stages:
            if s.error is not None:
                raise s.error
        writer.close()
    except BaseException:
        halt(stages, stop)
        writer.abort()
        raise
    finally:
        halt(stages, stop)
    return dst
