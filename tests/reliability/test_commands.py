"""Every user-facing command on every bad input it applies to (issue 15).

Each media command runs once over the whole corpus (good and bad files in one batch, as a user's
folder would be); the tests then look at every file of that run: the exit code, exactly one
stderr line naming each bad file, none for a good one, the good files' outputs, no traceback, no
temporary or partial file left behind — and, for ``anonymize``, that no face the detector finds
in the input survives in the output. A new command joins ``MEDIA_COMMANDS`` (or a row table
below) when it is added to the CLI.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.reliability import corpus as C
from tests.reliability.conftest import IS_ROOT, hidden_files, invoke

# files a command cannot even plan with: each gets its own run (see test_anonymize_refuses_unplannable_input)
ANON_SINGLE = ("missing", "loop", "dir_mp4", "audio_only", "missing_markup")
IMAGE_KEYS = ("good_photo", "png16", "cmyk", "exif", "random_jpg", "huge_png")

# (command, corpus key) pairs still being fixed elsewhere (issue 15, the anonymize/media helper)
IN_PROGRESS: dict = {}  # (command, corpus key) -> why a row is still expected to fail


def applies(command: str, key: str) -> bool:
    if command == "anonymize":
        return key not in ANON_SINGLE
    if command == "group":
        return key not in IMAGE_KEYS
    return True


def argv_for(command: str, files: list[Path], out: Path, extra: dict) -> list:
    if command == "probe":
        return ["probe", "--json", *files]
    if command == "anonymize":
        return ["anonymize", *files, "--out", out]
    if command == "expression":
        return ["expression", "predict", *files, "--out", out / "pred", "--frames", "2", "--tta", "none",
                "--annotate"]
    if command == "group":
        return ["group", "predict", extra["group_checkpoint"], *files, "--out", out]
    raise KeyError(command)


@pytest.fixture(scope="session")
def runs(media, group_checkpoint, tmp_path_factory):
    """``run(command) -> (Result, out folder, {key: entry})``, each command run once (lazily)."""
    done: dict = {}

    def run(command: str):
        if command not in done:
            entries = {k: e for k, e in media.items() if applies(command, k)}
            out = tmp_path_factory.mktemp(f"out_{command}")
            shutil.rmtree(out)  # commands make their own output folder
            result = invoke(argv_for(command, [e.path for e in entries.values()], out,
                                     {"group_checkpoint": group_checkpoint}))
            done[command] = (result, out, entries)
        return done[command]

    return run


CASES = [(cmd, key) for cmd in C.MEDIA_COMMANDS for key in C.ALL_KEYS if applies(cmd, key)]


def _case_param(cmd: str, key: str):
    marks = [pytest.mark.xfail(strict=False, reason=IN_PROGRESS[(cmd, key)])] if (cmd, key) in IN_PROGRESS else []
    return pytest.param(cmd, key, id=f"{cmd}-{key}", marks=marks)


@pytest.mark.parametrize("command", C.MEDIA_COMMANDS)
def test_batch_exit_code_and_no_traceback(runs, command):
    result, out, entries = runs(command)
    assert "Traceback" not in result.err + result.out, result.err[-3000:]
    any_bad = any(e.outcome(command) == C.BAD for e in entries.values())
    assert result.code == (1 if any_bad else 0), result.err[-3000:]
    inputs = next(iter(entries.values())).path.parent
    assert not hidden_files(out, inputs), "temporary files left behind"


@pytest.mark.parametrize("command,key", [_case_param(c, k) for c, k in CASES])
def test_each_file(runs, command, key):
    result, out, entries = runs(command)
    entry = entries[key]
    expect = entry.outcome(command)
    naming = result.lines_naming(entry.shown)
    if expect == C.BAD:
        assert len(naming) == 1, f"want one line naming {entry.shown!r}, got {naming} in:\n{result.err}"
        assert "\n" not in naming[0] and len(naming[0]) > len(entry.shown) + 8  # names the problem too
        assert not _outputs(command, result, out, entry), "a failed file left an output"
    elif expect == C.OK:
        errors = [line for line in naming if line.split(":", 1)[0] in ("error", "failed", "skipped")]
        assert not errors, errors
        assert _outputs(command, result, out, entry), f"{entry.shown} was not done:\n{result.err}"
    else:
        assert len(naming) <= 1, naming


def _outputs(command: str, result, out: Path, entry: C.Entry) -> list:
    """What the command made of ``entry`` (empty: nothing)."""
    if command == "probe":
        return [r for r in json.loads(result.out or "[]") if r["path"] == str(entry.path)]
    if command == "anonymize":
        return [p for p in out.rglob("*") if p.name == entry.path.name] if out.is_dir() else []
    if command == "expression":
        pred = out / "pred.json"
        done = [r for r in json.loads(pred.read_text())["results"] if r["file"] == str(entry.path)] \
            if pred.is_file() else []
        annotated = [p for p in (out / "pred_annotated").rglob("*")  # (a name may hold glob characters)
                     if p.name.startswith(f"{entry.path.stem}_expression.")] if (out / "pred_annotated").is_dir() else []
        if not done:
            return annotated  # a failed file must not have an annotated copy either
        return done if annotated else []
    if command == "group":
        pred = out / "predictions.json"
        return [r for r in json.loads(pred.read_text())["results"] if r["video"] == str(entry.path)] \
            if pred.is_file() else []
    raise KeyError(command)


# ----------------------------------------------------------------------------- privacy fails closed

FACE_KEYS = ("good_photo", "png16", "cmyk", "exif", "good_clip")


def _faces(path: Path) -> int:
    from affectlens.faces.detect import detect_faces
    from affectlens.media import iter_frames
    from affectlens.media.image import IMAGE_EXTS, read_image

    if path.suffix.lower() in IMAGE_EXTS:
        return len(detect_faces(read_image(path)))
    return max(len(detect_faces(np.ascontiguousarray(rgb))) for _, _, rgb in iter_frames(path))


@pytest.mark.parametrize("key", FACE_KEYS)
def test_anonymized_output_holds_no_face_the_detector_finds(runs, media, key):
    if not media[key].face:
        pytest.skip("no real face photo: ../shared/data/media/images/single_face.jpg is missing")
    result, out, _ = runs("anonymize")
    src = media[key].path
    assert _faces(src) >= 1, "the corpus photo should show a face the detector finds"
    (dst,) = [p for p in out.rglob("*") if p.name == src.name]
    assert _faces(dst) == 0, f"a face survived anonymization in {dst.name}"


@pytest.mark.parametrize("key", ANON_SINGLE)
def test_anonymize_refuses_unplannable_input(media, tmp_path, key):
    """A path that names nothing to anonymize (missing, a symlink loop, an empty folder, audio only):
    exit 1, one line naming it, nothing written."""
    entry = media[key]
    r = invoke(["anonymize", entry.path, "--out", tmp_path / "o"])
    assert r.code == 1 and "Traceback" not in r.err
    assert len(r.lines_naming(entry.shown)) == 1, r.err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").rglob("*"))


def test_anonymize_batch_with_a_missing_path_still_does_the_good_files(media, tmp_path):
    r = invoke(["anonymize", media["good_photo"].path, media["missing"].path, "--out", tmp_path / "o"])
    assert r.code == 1 and len(r.lines_naming(media["missing"].shown)) == 1
    assert (tmp_path / "o" / media["good_photo"].path.name).is_file()


# ----------------------------------------------------------------------------- output locations

def _output_rows():
    """(id, argv builder, the path the one error line must name); each must fail before any work."""
    return [
        ("expression-parent-is-file", lambda m, f, d, ck: ["expression", "predict", m["good_photo"].path,
                                                           "--out", f / "pred"], "f"),
        ("expression-out-is-folder-for-csv", lambda m, f, d, ck: ["expression", "predict", m["good_photo"].path,
                                                                  "--out", d / "x"], "dcsv"),
        ("group-predict-out-is-file", lambda m, f, d, ck: ["group", "predict", ck, m["good_clip"].path,
                                                           "--out", f], "f"),
        ("group-predict-out-is-input", lambda m, f, d, ck: ["group", "predict", ck, m["good_clip"].path,
                                                            "--out", m["good_clip"].path], "input"),
        ("anonymize-out-is-input", lambda m, f, d, ck: ["anonymize", m["good_photo"].path,
                                                        "--out", m["good_photo"].path], "input"),
        ("anonymize-parent-is-file", lambda m, f, d, ck: ["anonymize", m["good_photo"].path,
                                                          "--out", f / "o.jpg"], "f"),
    ]


@pytest.mark.parametrize("row", _output_rows(), ids=lambda r: r[0] if isinstance(r, tuple) else None)
def test_unwritable_output_is_one_line_before_any_work(media, group_checkpoint, tmp_path, row):
    _, build, names = row
    blocker = tmp_path / "a_file.txt"
    blocker.write_text("not a folder")
    folder = tmp_path / "dir"
    (folder / "x.csv").mkdir(parents=True)
    before = {k: e.path.read_bytes() for k, e in media.items() if e.path.is_file() and not e.path.is_symlink()}
    r = invoke(build(media, blocker, folder, group_checkpoint))
    assert r.code == 1 and "Traceback" not in r.err, r.err
    assert len(r.err_lines) == 1 and r.err_lines[0].startswith("error:"), r.err
    expected = {"f": "a_file.txt", "dcsv": "x.csv", "input": "input"}[names]
    assert expected in r.err_lines[0]
    assert not r.out.strip(), "work was done before the output was checked"
    assert blocker.read_text() == "not a folder"
    assert {k: media[k].path.read_bytes() for k in before} == before, "an input was changed"


@pytest.mark.skipif(IS_ROOT, reason="running as root: a read-only folder does not stop root writing, so "
                                    "chmod cannot make one here (the parent-is-a-file rows cover the check)")
@pytest.mark.parametrize("command", ["expression", "group", "anonymize"])
def test_read_only_output_folder(media, group_checkpoint, tmp_path, command):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        argv = {"expression": ["expression", "predict", media["good_photo"].path, "--out", ro / "pred"],
                "group": ["group", "predict", group_checkpoint, media["good_clip"].path, "--out", ro / "g"],
                "anonymize": ["anonymize", media["good_photo"].path, "--out", ro / "o.jpg"]}[command]
        r = invoke(argv)
        assert r.code == 1 and "Traceback" not in r.err and len(r.err_lines) == 1, r.err
        assert "ro" in r.err_lines[0]
        assert not list(ro.iterdir())
    finally:
        ro.chmod(0o755)


# ----------------------------------------------------------------------------- TFRecords

BAD_SHARDS = ("empty", "bitflip", "truncated", "huge_length", "varint70", "random")


@pytest.mark.parametrize("key", BAD_SHARDS)
def test_videotag_eval_on_a_bad_shard(shards, videotag_checkpoint, key):
    r = invoke(["videotag", "eval", videotag_checkpoint, "--data", shards[key], "--split", "all"])
    assert r.code == 1 and "Traceback" not in r.err, r.err
    assert len(r.lines_naming(shards[key].name)) == 1, r.err
    assert "GAP" not in r.out  # no metrics from nothing


def test_videotag_eval_on_good_shards(shards, videotag_checkpoint):
    r = invoke(["videotag", "eval", videotag_checkpoint, "--data", shards["good0"].parent, "--split", "all"])
    assert r.code == 0 and "GAP" in r.out, r.err


def test_videotag_predict_goes_on_past_bad_shards(shards, videotag_checkpoint, tmp_path):
    from affectlens.videotag import data as D

    folder = tmp_path / "mixed"
    folder.mkdir()
    for key, path in shards.items():
        shutil.copy(path, folder / path.name)
    out = tmp_path / "pred.csv"
    r = invoke(["videotag", "predict", videotag_checkpoint, "--data", folder, "--split", "all", "--out", out])
    assert r.code == 1 and "Traceback" not in r.err, r.err
    for key in BAD_SHARDS:
        assert len(r.lines_naming(shards[key].name)) == 1, (key, r.err)
    good_ids = [v for k in ("good0", "good1", "good2") for v in D.read_video_level([shards[k]]).ids]
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["VideoId", "LabelConfidencePairs"] and sorted(r[0] for r in rows[1:]) == sorted(good_ids)
    assert not hidden_files(tmp_path)


def test_videotag_predict_on_only_bad_shards_writes_nothing(shards, videotag_checkpoint, tmp_path):
    out = tmp_path / "pred.csv"
    r = invoke(["videotag", "predict", videotag_checkpoint, "--data", shards["empty"], "--split", "all",
                "--out", out])
    assert r.code == 1 and "Traceback" not in r.err and not out.exists(), r.err
    assert r.lines_naming("empty.tfrecord")


def test_videotag_predict_refuses_to_write_over_a_shard(shards, videotag_checkpoint, tmp_path):
    shard = tmp_path / "s.tfrecord"
    shutil.copy(shards["good0"], shard)
    before = shard.read_bytes()
    r = invoke(["videotag", "predict", videotag_checkpoint, "--data", shard, "--split", "all", "--out", shard])
    assert r.code == 1 and len(r.err_lines) == 1 and "input" in r.err_lines[0], r.err
    assert shard.read_bytes() == before


# ----------------------------------------------------------------------------- VGAF label rows

@pytest.fixture(scope="module")
def vgaf(media, tmp_path_factory):
    root = tmp_path_factory.mktemp("vgaf") / "set"
    return C.build_vgaf(root, media["good_clip"].path, media["no_audio"].path, b"not a video")


def test_group_features_on_bad_label_rows(vgaf, tmp_path):
    from affectlens.group.data import FeatureSpec, cache_path

    root, info = vgaf
    cache = tmp_path / "cache"
    r = invoke(["group", "features", root, "--cache", cache, "--size", "32"])
    assert r.code == 1 and "Traceback" not in r.err, r.err
    for line in info["bad_rows"]:
        assert len(r.lines_naming(f"labels.txt:{line}:")) == 1, (line, r.err)
    for name in info["bad_clips"]:
        assert len(r.lines_naming(name)) == 1, (name, r.err)
        assert not cache_path(cache, FeatureSpec(5, 5, 32), name).exists()
    for name in info["good"]:  # a/same.mp4 and b/same.mp4 are two entries, not a clash
        assert cache_path(cache, FeatureSpec(5, 5, 32), name).is_file(), name
    assert not (root.parent / "cache").exists()  # ../ and absolute rows were never read or cached
    assert not hidden_files(cache, root)


# ----------------------------------------------------------------------------- YAML and label files

BAD_YAML = {
    "syntax": "epochs: [1, 2\n",
    "not_a_mapping": "- 1\n- 2\n",
    "unknown_key": "epochz: 3\n",
    "wrong_type": "epochs: many\n",
    "binary": "\x00\x01\x02\xff",
}


@pytest.mark.parametrize("kind", sorted(BAD_YAML))
@pytest.mark.parametrize("command", ["spontaneity-cv", "group-ablation"])
def test_malformed_yaml_is_one_line_naming_the_file(tmp_path, command, kind):
    cfg = tmp_path / f"bad {kind}.yaml"
    cfg.write_bytes(BAD_YAML[kind].encode("latin-1"))
    argv = {"spontaneity-cv": ["spontaneity", "cv", tmp_path / "manifest.csv", "--config", cfg],
            "group-ablation": ["group", "ablation", tmp_path, "--val", tmp_path, "--synthetic", tmp_path,
                               "--out", tmp_path / "abl", "--config", cfg]}[command]
    r = invoke(argv)
    assert r.code == 1 and "Traceback" not in r.err, r.err
    assert len(r.err_lines) == 1 and cfg.name in r.err_lines[0], r.err


BAD_FER = {
    "huge_field": "emotion,pixels,Usage\n0,\"" + "1" * 140_000 + "\",Training\n",
    "not_utf8": "emotion,pixels,Usage\n0,1 2 \udcff,Training\n",
    "short_row": "emotion,pixels,Usage\n0,1 2 3,Training\n",
    "bad_label": "emotion,pixels,Usage\n9," + " ".join(["0"] * 2304) + ",Training\n",
    "bad_header": "a,b,c\n",
    "nul_byte": "emotion,pixels,Usage\n0,1\x002,Training\n",
}


@pytest.mark.parametrize("kind", sorted(BAD_FER))
def test_malformed_fer_csv_is_one_line_naming_file_and_row(tmp_path, kind):
    path = tmp_path / f"fer {kind}.csv"
    path.write_bytes(BAD_FER[kind].encode("utf-8", "surrogateescape"))
    r = invoke(["expression", "eval", "--data", path, "--out", tmp_path / "ev", "--split", "Training"])
    assert r.code == 1 and "Traceback" not in r.err, r.err
    assert len(r.err_lines) == 1 and f"{path.name}:" in r.err_lines[0], r.err
    assert not (tmp_path / "ev" / "metrics.json").exists()
