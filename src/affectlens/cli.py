"""The ``affectlens`` command line: a thin Typer app that mounts each room's own sub-app.

A room ``affectlens.<room>.cli`` may define
  * ``app``: a ``typer.Typer`` mounted as ``affectlens <room>``;
  * ``synth_commands``: ``{name: function}`` mounted as ``affectlens synth <name>``;
  * ``top_commands``: ``{name: function}`` mounted at the top (e.g. ``affectlens anonymize``).
"""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from affectlens.errors import AffectlensError

ROOMS = ("group", "expression", "spontaneity", "videotag", "privacy")

app = typer.Typer(help="Privacy-first multimodal affect and video understanding.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
synth_app = typer.Typer(help="Write synthetic datasets in the real on-disk formats.", no_args_is_help=True)
app.add_typer(synth_app, name="synth")
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one error = one line, however long the path


@app.command()
def probe(files: List[Path] = typer.Argument(..., help="Media files to describe."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")):
    """Describe media files: duration, frame rate (and whether it varies), frames, size, rotation, audio."""
    from affectlens.media.video import probe as probe_file

    rows, failed = [], []
    for f in files:
        try:
            rows.append(probe_file(f).to_dict())
        except AffectlensError as e:
            failed.append(str(e))
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        table = Table("file", "duration s", "fps", "VFR", "frames", "size", "rot", "audio")
        for r in rows:
            a = r["audio"]
            audio = f"{a['sample_rate']} Hz × {a['channels']} ({a['codec']})" if a else "none"
            table.add_row(Path(r["path"]).name, f"{r['duration']:.3f}", f"{r['fps']:.3f}",
                          "yes" if r["variable_fps"] else "no", str(r["frame_count"]),
                          f"{r['width']}×{r['height']}", str(r["rotation"]), audio)
        console.print(table)
    for msg in failed:
        err_console.print(f"[red]error:[/red] {msg}")
    if failed:
        raise typer.Exit(1)


@app.command()
def demo(out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for the report and metrics."),
         only: Optional[List[str]] = typer.Option(None, "--only", help="Run only these steps (repeatable).")):
    """Run what every room can show on built-in data, then write report.html and metrics.json."""
    from affectlens.demo import run_demo

    run_demo(out, console=console, only=only or None)


def _mount_rooms() -> None:
    for room in ROOMS:
        name = f"affectlens.{room}.cli"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name in (name, f"affectlens.{room}"):  # the room has not landed yet
                continue
            raise
        if hasattr(module, "app"):
            app.add_typer(module.app, name=room)
        for cmd_name, fn in getattr(module, "synth_commands", {}).items():
            synth_app.command(cmd_name)(fn)
        for cmd_name, fn in getattr(module, "top_commands", {}).items():
            app.command(cmd_name)(fn)


_mount_rooms()


def main(argv: Optional[List[str]] = None) -> None:
    """Console entry point: bad input prints one line naming the file and exits 1."""
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except AffectlensError as e:
        err_console.print(f"[red]error:[/red] {e}")
        sys.exit(1)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as e:  # click usage errors carry their own exit code
        code = getattr(e, "exit_code", None)
        if code is None:
            raise
        if hasattr(e, "show"):
            e.show()
        sys.exit(code)


if __name__ == "__main__":
    main()
