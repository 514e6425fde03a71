"""One test per defect of issue 15 fixed outside the anonymizer (each fails without its fix)."""
from __future__ import annotations

import io
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from affectlens.errors import AffectlensError, DataError
from tests.reliability.conftest import invoke

MARKUP_NAMES = ["clip [bold]final.mp4", "x [/] y.mp4", "a [red]b[/red] :smile:.mp4", "[link=http://x]c[/link].mp4"]


# ----------------------------------------------------------------------------- 3: names read as markup

@pytest.mark.parametrize("name", MARKUP_NAMES)
def test_error_line_prints_names_literally(capsys, name):
    from affectlens.report.console import error_line, warning_line

    error_line(f"{name}: not a media file")
    warning_line(f"{name}: no face")
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: {name}: not a media file", f"warning: {name}: no face"]


@pytest.mark.parametrize("name", MARKUP_NAMES)
def test_batch_summary_and_progress_print_names_literally(capsys, monkeypatch, name):
    from rich.console import Console

    monkeypatch.setenv("AFFECTLENS_PROGRESS", "auto")

    from affectlens.report.console import progress
    from affectlens.scale import BatchResult

    BatchResult("local", failed=[(name, f"{name}: broken")]).print_summary(title=f"run {name}")
    err = capsys.readouterr().err
    assert f"failed: {name}: broken" in err and f"run {name}:" in err
    buf = io.StringIO()
    bar_console = Console(file=buf, force_terminal=True, width=200, color_system=None)
    with progress(console=bar_console, failed_column=True) as bar:  # a file name as a task description
        bar.add_task(name, total=1, failed=0)
    assert name in buf.getvalue()


@pytest.mark.parametrize("name", MARKUP_NAMES)
def test_group_predict_reports_a_markup_name_literally(group_checkpoint, tmp_path, name):
    missing = tmp_path / name  # "[/]" makes a folder "x [" and a file "] y.mp4"
    r = invoke(["group", "predict", group_checkpoint, missing, "--out", tmp_path / "o"])
    assert r.code == 1 and "Traceback" not in r.err and "MarkupError" not in r.err, r.err
    assert len(r.lines_naming(str(missing))) == 1, r.err


def test_videotag_metrics_table_shows_a_markup_path(capsys):
    from affectlens.videotag.cli import _print_metrics

    _print_metrics("runs/[bold]x[/] on 3 videos", {"[red]m": {"gap": 0.5, "hit_at_one": 0.5, "perr": 0.5, "map": 0.5}})
    out = capsys.readouterr().out
    assert "runs/[bold]x[/]" in out and "[red]m" in out


# ----------------------------------------------------------------------------- 9: option values

BAD_OPTIONS = [
    (["expression", "predict", "c.mp4", "--frames", "0"], "--frames"),
    (["expression", "predict", "c.mp4", "--frames", "-3"], "--frames"),
    (["expression", "predict", "c.mp4", "--tta", "bogus"], "--tta"),
    (["expression", "predict", "c.mp4", "--detector", "bogus"], "--detector"),
    (["expression", "predict", "c.mp4", "--threshold", "0"], "--threshold"),
    (["expression", "predict", "c.mp4", "--threshold", "nan"], "--threshold"),
    (["expression", "eval", "--split", "Validation"], "--split"),
    (["expression", "eval", "--tta", "none", "--tta", "rot90"], "--tta"),
    (["group", "predict", "m.pt", "v.mp4", "--hop", "0"], "--hop"),
    (["group", "predict", "m.pt", "v.mp4", "--hop", "-1"], "--hop"),
    (["group", "predict", "m.pt", "v.mp4", "--window", "0"], "--window"),
    (["group", "predict", "m.pt", "v.mp4", "--window", "inf"], "--window"),
    (["group", "features", "d", "--frames", "0"], "--frames"),
    (["group", "features", "d", "--size", "0"], "--size"),
    (["group", "features", "d", "--missing-audio", "zeros"], "--missing-audio"),
    (["group", "features", "d", "--backend", "spark"], "--backend"),
    (["group", "ablation", "d", "--val", "v", "--synthetic", "s", "--frames", "5,x"], "--frames"),
    (["videotag", "predict", "m.pt", "--data", "d", "--top-k", "0"], "--top-k"),
    (["videotag", "predict", "m.pt", "--data", "d", "--split", "test"], "--split"),
    (["videotag", "eval", "m.pt", "--data", "d", "--train-shards", "-1"], "--train-shards"),
    (["spontaneity", "cv", "m.csv", "--folds", "1"], "--folds"),
    (["spontaneity", "cv", "m.csv", "--threads", "3"], "--threads"),
    (["spontaneity", "cv", "m.csv", "--lr", "0"], "--lr"),
    (["spontaneity", "predict", "a.png", "b.png", "-c", "m.pt", "--onset-frame", "-1"], "--onset-frame"),
    (["synth", "group", "o", "--balance", "1,2"], "--balance"),
    (["synth", "group", "o", "--seconds", "0"], "--seconds"),
    (["synth", "spontaneity", "o", "--difficulty", "2"], "--difficulty"),
    (["synth", "videotext", "s", "o.jsonl", "--leak", "1.5"], "--leak"),
]


@pytest.mark.parametrize("argv,option", BAD_OPTIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_bad_option_value_is_one_usage_line(tmp_path, monkeypatch, argv, option):
    monkeypatch.chdir(tmp_path)
    r = invoke(argv)
    assert r.code == 2 and "Traceback" not in r.err, r.err
    assert len(r.err_lines) == 1, r.err
    assert r.err_lines[0].startswith(f"error: {option}: ") and "--help" in r.err_lines[0], r.err
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_usage_errors_of_other_kinds_are_one_line_too():
    for argv in (["expression", "predict"], ["group", "predict", "m.pt", "v.mp4", "--bogus"],
                 ["group", "predict", "m.pt", "v.mp4", "--hop"], ["no-such-command"]):
        r = invoke(argv)
        assert r.code == 2 and len(r.err_lines) == 1 and r.err_lines[0].startswith("error: "), (argv, r.err)


def test_predictor_api_refuses_bad_options_before_any_work(tmp_path):
    from affectlens.expression.predict import predict_paths
    from affectlens.group.recipe import check_window

    for kw in ({"n_frames": 0}, {"tta": "bogus"}, {"detector": "bogus"}, {"threshold": 1.0}):
        with pytest.raises(AffectlensError):
            predict_paths([tmp_path / "a.jpg"], tmp_path / "o", **kw)
    for window, hop in ((5.0, 0.0), (5.0, -1.0), (0.0, 1.0), (float("nan"), 1.0)):
        with pytest.raises(AffectlensError):
            check_window(window, hop)
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- 10: unwritable outputs

def test_check_output_refuses_what_cannot_be_written(tmp_path):
    from affectlens.scale import OutputError, check_output

    f = tmp_path / "file.txt"
    f.write_text("x")
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputError, match="file.txt is not a folder"):
        check_output(f / "sub" / "o.csv")
    with pytest.raises(OutputError, match="a file is needed"):
        check_output(tmp_path / "d")
    with pytest.raises(OutputError, match="a folder is needed"):
        check_output(f, kind="dir")
    with pytest.raises(OutputError, match="input"):
        check_output(f, inputs=[f])
    loop = tmp_path / "loop"
    loop.symlink_to(loop.name)
    with pytest.raises(OutputError):
        check_output(loop / "o.csv")
    assert check_output(tmp_path / "new" / "deeper" / "o.csv") and not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "file.txt", "loop"]  # nothing left behind


@pytest.mark.skipif(hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0,
                    reason="running as root: chmod does not stop root writing, so no read-only folder here")
def test_check_output_refuses_a_read_only_folder(tmp_path):
    from affectlens.scale import OutputError, check_output

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="ro"):
            check_output(ro / "o.csv")
    finally:
        ro.chmod(0o755)


def test_expression_predict_checks_its_output_before_loading_anything(tmp_path, monkeypatch):
    import affectlens.expression.predict as P

    def boom(*a, **k):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(P, "load_model", boom)
    (tmp_path / "f").write_text("x")
    with pytest.raises(AffectlensError, match="cannot write output"):
        P.predict_paths([tmp_path / "a.jpg"], tmp_path / "f" / "pred")


# ----------------------------------------------------------------------------- 11: crafted data

def _framed(length: int, payload: bytes) -> bytes:
    from affectlens.videotag.data import crc32c, masked_crc

    header = struct.pack("<Q", length)
    return header + struct.pack("<I", masked_crc(crc32c(header))) + payload


def test_tfrecord_with_a_huge_valid_length_is_refused_before_reading(tmp_path):
    from affectlens.videotag.data import iter_records

    p = tmp_path / "huge.tfrecord"
    p.write_bytes(_framed(1 << 40, b"x" * 32))
    with pytest.raises(DataError, match=r"huge\.tfrecord: corrupt record at byte offset 0: length \d+ is over"):
        list(iter_records(p))
    p.write_bytes(_framed(1000, b"x" * 32))  # under the limit but past the end of the file
    with pytest.raises(DataError, match="truncated record at byte offset 0"):
        list(iter_records(p))


def test_seventy_bit_varint_is_a_data_error(shards):
    from affectlens.videotag.data import read_video_level
    from affectlens.videotag.tfrecord import _varint

    with pytest.raises(ValueError, match="varint"):
        _varint(b"\xff" * 9 + b"\x7f", 0)
    with pytest.raises(DataError, match=r"varint70\.tfrecord: record at byte offset 0 .*varint"):
        read_video_level([shards["varint70"]])


def test_empty_shard_is_an_error(shards):
    from affectlens.videotag.data import iter_frame_level, read_video_level

    with pytest.raises(DataError, match=r"empty\.tfrecord: empty shard"):
        read_video_level([shards["empty"]])
    with pytest.raises(DataError, match=r"empty\.tfrecord: empty shard"):
        list(iter_frame_level([shards["empty"]]))


@pytest.mark.parametrize("text,match", [
    ("emotion,pixels,Usage\n0,\"" + "1" * 140_000 + "\",Training\n", r":2: malformed csv row"),
    ("emotion,pixels,Usage\n0," + " ".join(["1"] * 2304) + ",Training\n0,1 \udcff,Training\n", r":3: not UTF-8"),
    ("emotion,pixels,Usage\n0," + " ".join(["9" * 30] * 2304) + ",Training\n", r":2: pixels"),
])
def test_fer_csv_crafted_rows_name_file_and_line(tmp_path, text, match):
    from affectlens.expression.data import read_fer_csv

    p = tmp_path / "fer.csv"
    p.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(DataError, match=r"fer\.csv" + match):
        read_fer_csv(p)


# ----------------------------------------------------------------------------- 12: smaller ones

def test_error_lines_do_not_wrap_on_a_pipe_and_escape_newlines(tmp_path):
    deep = tmp_path / ("long_folder_name_" * 8) / "bad\nname with spaces.mp4"
    deep.parent.mkdir(parents=True)
    deep.write_bytes(b"not a video")
    r = subprocess.run(f"{sys.executable} -m affectlens expression predict '{deep}' --out '{tmp_path / 'p'}' 2>&1 | cat",
                       shell=True, capture_output=True, text=True, timeout=300)
    errors = [line for line in r.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, r.stdout
    assert len(errors[0]) > 150 and "bad\\nname with spaces.mp4: " in errors[0]  # one line, newline escaped


def test_one_line_escapes_control_characters():
    from affectlens.report.console import one_line

    assert one_line("a\nb\tc\x1b[31md\u202ee") == "a\\nb\\tc\\x1b[31md\\u202ee"


def test_random_bytes_checkpoint_is_one_line_without_torch_advice(tmp_path, media):
    ck = tmp_path / "model.pt"
    ck.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    r = invoke(["group", "predict", ck, media["good_clip"].path, "--out", tmp_path / "o"])
    assert r.code == 1 and len(r.err_lines) == 1, r.err
    assert "model.pt: not a readable checkpoint" in r.err_lines[0] and "weights_only" not in r.err


def test_annotate_never_writes_one_copy_over_another(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for d in ("d1", "d2"):
        (tmp_path / d).mkdir()
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(tmp_path / d / "face.jpg")
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(tmp_path / "d2" / "face.png")
    out = tmp_path / "o" / "pred"
    r = invoke(["expression", "predict", tmp_path / "d1" / "face.jpg", tmp_path / "d2" / "face.jpg",
                tmp_path / "d2" / "face.png", "--out", out, "--annotate", "--tta", "none"])
    assert r.code == 0, r.err
    written = sorted(str(p.relative_to(out.parent / "pred_annotated")) for p in (out.parent / "pred_annotated").rglob("*.jpg"))
    assert written == ["d1/face_expression.jpg", "d2/face_expression.jpg", "d2/face_png_expression.jpg"]


def test_vgaf_rows_outside_the_dataset_are_refused(tmp_path):
    from affectlens.group.data import read_vgaf

    (tmp_path / "set" / "clips" / "a").mkdir(parents=True)
    (tmp_path / "set" / "clips" / "b").mkdir(parents=True)
    for name in ("a/c.mp4", "b/c.mp4"):
        (tmp_path / "set" / "clips" / name).write_bytes(b"x")
    (tmp_path / "x.mp4").write_bytes(b"x")
    (tmp_path / "set" / "labels.txt").write_text(
        f"Vid_name Label\na/c.mp4 1\nb/c.mp4 2\n../../x.mp4 1\n{tmp_path / 'x.mp4'} 2\na/c.mp4 3\n")
    index = read_vgaf(tmp_path / "set")
    assert [it.name for it in index.items] == ["a/c.mp4", "b/c.mp4"]
    assert [e.split(": ", 1)[0].rsplit(":", 1)[1] for e in index.errors] == ["4", "5", "6"]
    assert "relative to the dataset folder" in index.errors[0] and "already listed on line 2" in index.errors[2]
    with pytest.raises(DataError, match="labels.txt:4"):
        read_vgaf(tmp_path / "set", on_error="error")


def test_same_clip_name_in_two_subfolders_gets_two_cache_entries():
    from affectlens.group.data import FeatureSpec, cache_path

    spec = FeatureSpec(5, 5, 32)
    assert cache_path(Path("c"), spec, "a/same.mp4") != cache_path(Path("c"), spec, "b/same.mp4")
    assert cache_path(Path("c"), spec, "one.mp4") == cache_path(Path("c"), spec, "one") == Path("c/v5_a5_s32/one.npz")


# ----------------------------------------------------------------------------- 5: feature caches

@pytest.fixture
def small_vgaf(media, tmp_path):
    root = tmp_path / "set"
    (root / "clips").mkdir(parents=True)
    (root / "clips" / "talk.mp4").write_bytes(media["good_clip"].path.read_bytes())
    (root / "clips" / "mute.mp4").write_bytes(media["no_audio"].path.read_bytes())
    (root / "labels.txt").write_text("Vid_name Label\ntalk.mp4 1\nmute.mp4 2\n")
    return root


def test_group_features_cache_keys_on_the_options(small_vgaf, tmp_path):
    from affectlens.group.data import FeatureSpec, cache_path

    cache = tmp_path / "cache"
    base = ["group", "features", small_vgaf, "--cache", cache, "--size", "32", "--frames", "3"]
    r = invoke(base + ["--missing-audio", "silence"])
    assert r.code == 0 and "2 cached, 0 already cached" in r.out, r.out + r.err
    # other options: recomputed (or failed), never read from the entries the silence run made
    r = invoke(base)
    assert r.code == 1 and "1 cached, 0 already cached, 1 failed" in r.out, r.out + r.err
    assert len(r.lines_naming("mute.mp4: no audio track")) == 1
    r = invoke(["group", "features", small_vgaf, "--cache", cache, "--size", "32", "--frames", "4"])
    assert "1 cached, 0 already cached" in r.out, r.out
    # an entry made by other code (no record of its options) or damaged is made again
    entry = cache_path(cache, FeatureSpec(3, 3, 32, "silence"), "talk.mp4")
    with np.load(entry) as z:
        np.savez(entry, **{k: z[k] for k in z.files if k != "spec"})
    cache_path(cache, FeatureSpec(3, 3, 32, "silence"), "mute.mp4").write_bytes(b"damaged")
    r = invoke(base + ["--missing-audio", "silence"])
    assert r.code == 0 and "2 cached, 0 already cached" in r.out, r.out + r.err
    r = invoke(base + ["--missing-audio", "silence"])
    assert "0 cached, 2 already cached" in r.out, r.out
