"""Shared pieces of the reliability suite: the corpus (built once per session), small models, and
``invoke``, which runs ``affectlens.cli.main`` in this process and captures what a user would see."""
from __future__ import annotations

import contextlib
import io
import os
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA
from tests.reliability import corpus as C

PHOTO = SHARED_DATA / "media" / "images" / "single_face.jpg"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def lines_naming(self, name: str) -> list[str]:
        return [line for line in self.err_lines if name in line]


def invoke(argv: list[str]) -> Result:
    """``affectlens ARGV`` in-process: the exit code and the captured stdout and stderr. An exception
    escaping ``main`` is recorded as a traceback on stderr (exit -1), which every test refuses."""
    from affectlens.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:  # noqa: BLE001 - what a user would see as a traceback
            err.write(traceback.format_exc())
            code = -1
    return Result(code, out.getvalue(), err.getvalue())


def hidden_files(*folders: Path) -> list[Path]:
    """Hidden (temporary) files left anywhere under ``folders``."""
    found = []
    for folder in folders:
        if folder.is_dir():
            found += [p for p in folder.rglob(".*")]
    return sorted(found)


@pytest.fixture(scope="session")
def photo_path():
    """A small copy of a real face photo from ../shared/data, or None when the folder is absent."""
    return PHOTO if PHOTO.is_file() else None


@pytest.fixture(scope="session")
def media(tmp_path_factory, photo_path):
    """``{key: corpus.Entry}`` of media files (see corpus.build_media)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("corpus")
    small = None
    if photo_path is not None:  # a 200-px copy keeps every command fast; CenterFace still finds the face
        small = root / "photo_small.jpg"
        im = Image.open(photo_path).convert("RGB")
        im.thumbnail((200, 200))
        im.save(small, quality=92)
    entries = C.build_media(root / "media", small)
    if small is not None:
        small.unlink()
    return entries


@pytest.fixture(scope="session")
def shards(tmp_path_factory):
    return C.build_shards(tmp_path_factory.mktemp("yt8m"))


@pytest.fixture(scope="session")
def group_checkpoint(tmp_path_factory):
    """A tiny, untrained group model (5 frames of 32 px) in the checkpoint format ``group predict`` reads."""
    from affectlens.group.model import build_model
    from affectlens.group.recipe import TrainConfig
    from affectlens.training.checkpoint import save_checkpoint

    cfg = TrainConfig(size="tiny", frames=5, img_size=32, threads=1)
    model = build_model(cfg.model_config())
    return save_checkpoint(tmp_path_factory.mktemp("gck") / "group.pt", model, model.cfg, train=cfg)


@pytest.fixture(scope="session")
def videotag_checkpoint(tmp_path_factory, shards):
    """A one-epoch mixture of experts trained by ``videotag train`` on the good shards."""
    run = tmp_path_factory.mktemp("vtrun")
    cfg = run / "tiny.yaml"
    cfg.write_text("model: moe\nnum_experts: 2\nepochs: 1\nbatch_size: 32\nlr: 0.01\nthreads: 1\n")
    r = invoke(["videotag", "train", "--data", shards["good0"].parent, "--config", cfg, "--out", run / "out",
                "--train-shards", "3"])
    assert r.code == 0, r.err
    for name in ("best.pt", "last.pt", "model.pt"):
        if (run / "out" / name).is_file():
            return run / "out" / name
    raise AssertionError(f"videotag train wrote no checkpoint: {sorted(p.name for p in (run / 'out').iterdir())}")
