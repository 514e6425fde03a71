"""Every command of the CLI tree, given an input that does not exist (or, for the few that read
nothing, an output it cannot write): one line naming it on stderr, a non-zero exit, no traceback,
and nothing written. The table must name every command the CLI has, so a new command joins it
when it is added (``test_the_table_covers_the_whole_cli``)."""
from __future__ import annotations

import re

import pytest

from tests.reliability.conftest import invoke

# argv with {m} = a missing folder, {o} = a fresh output folder, {f} = a regular file (not a folder)
BATCH = {"expression predict"}  # goes on past a bad file: also a count of failures, and its (empty) table
ROWS = {
    "anonymize": ["anonymize", "{m}/a.mp4", "--out", "{o}/a.mp4"],
    "demo": ["demo", "--out", "{f}/demo"],
    "expression ensemble": ["expression", "ensemble", "{m}/a.pt", "{m}/b.pt", "--out", "{o}/e.pt"],
    "expression eval": ["expression", "eval", "--weights", "{m}/w.pt", "--out", "{o}"],
    "expression predict": ["expression", "predict", "{m}/a.jpg", "--out", "{o}/pred"],
    "expression train": ["expression", "train", "--data", "{m}/fer2013.csv", "--out", "{o}/run"],
    "group ablation": ["group", "ablation", "{m}/train", "--val", "{m}/val", "--synthetic", "{m}/syn", "--out", "{o}"],
    "group eval": ["group", "eval", "{m}/best.pt", "{m}/val"],
    "group features": ["group", "features", "{m}/vgaf"],
    "group sweep": ["group", "sweep", "{m}/train", "--val", "{m}/val", "--synthetic", "{m}/syn", "--out", "{o}"],
    "group predict": ["group", "predict", "{m}/best.pt", "{m}/v.mp4", "--out", "{o}"],
    "group train": ["group", "train", "{m}/vgaf", "--out", "{o}/run"],
    "privacy evaluate": ["privacy", "evaluate", "--data", "{m}/celeba", "--out", "{o}/eval"],
    "privacy train-attributes": ["privacy", "train-attributes", "--data", "{m}/celeba", "--out", "{o}/run"],
    "privacy train-reconstruct": ["privacy", "train-reconstruct", "--data", "{m}/celeba", "--out", "{o}/run"],
    "probe": ["probe", "{m}/a.mp4"],
    "spontaneity cv": ["spontaneity", "cv", "{m}/manifest.csv", "--out", "{o}/cv"],
    "spontaneity curve": ["spontaneity", "curve", "{m}/manifest.csv", "--out", "{o}/curve"],
    "spontaneity manifest": ["spontaneity", "manifest", "{m}/nvie", "--out", "{o}/manifest.csv"],
    "spontaneity predict": ["spontaneity", "predict", "{m}/on.png", "{m}/ap.png", "--checkpoint", "{m}/m.pt"],
    "spontaneity preprocess": ["spontaneity", "preprocess", "{m}/manifest.csv", "--out", "{o}/pre"],
    "spontaneity train": ["spontaneity", "train", "{m}/manifest.csv", "--out", "{o}/run"],
    "synth group": ["synth", "group", "{o}/syn", "--faces", "{m}/faces", "--count", "2"],
    "synth spontaneity": ["synth", "spontaneity", "{f}/syn"],
    "synth videotext": ["synth", "videotext", "{m}/shards", "{o}/text.jsonl"],
    "synth yt8m-frames": ["synth", "yt8m-frames", "{m}/shards", "{o}/frames"],
    "videotag ablation": ["videotag", "ablation", "--data", "{m}/shards", "--text", "{m}/t.jsonl", "--out", "{o}/abl"],
    "videotag demo": ["videotag", "demo", "{f}/demo"],
    "videotag ensemble": ["videotag", "ensemble", "{m}/a.pt", "--data", "{m}/shards", "--out", "{o}/ens"],
    "videotag eval": ["videotag", "eval", "{m}/c.pt", "--data", "{m}/shards"],
    "videotag predict": ["videotag", "predict", "{m}/c.pt", "--data", "{m}/shards", "--out", "{o}/p.csv"],
    "videotag train": ["videotag", "train", "--data", "{m}/shards", "--out", "{o}/run"],
}


def _cli_commands() -> set[str]:
    import typer

    from affectlens.cli import app

    def walk(command, path):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield " ".join(path)

    return set(walk(typer.main.get_command(app), []))


def test_the_table_covers_the_whole_cli():
    assert set(ROWS) == _cli_commands()


@pytest.mark.parametrize("command", sorted(ROWS))
def test_a_missing_input_is_one_line_naming_it(tmp_path, command):
    missing, out, plain = tmp_path / "missing", tmp_path / "out", tmp_path / "plain.txt"
    out.mkdir()
    plain.write_text("a file, not a folder\n")
    argv = [a.format(m=missing, o=out, f=plain) for a in ROWS[command]]
    r = invoke(argv)
    named = missing if "{m}" in " ".join(ROWS[command]) else plain
    assert r.code not in (0, -1) and "Traceback" not in r.err, (r.code, r.err[-800:])
    naming = [line for line in r.err_lines if str(named) in line]
    others = [line for line in r.err_lines if str(named) not in line]
    assert len(naming) == 1 and (not others if command not in BATCH else re.fullmatch(r"\d+ .*failed", others[0])), r.err_lines
    assert not missing.exists() and plain.read_text() == "a file, not a folder\n"
    assert command in BATCH or not list(out.rglob("*")), sorted(out.rglob("*"))
