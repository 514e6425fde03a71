"""The ``affectlens`` command line: a thin Typer app that mounts each room's own sub-app.

A room ``affectlens.<room>.cli`` may define
  * ``app``: a ``typer.Typer`` mounted as ``affectlens <room>``;
  * ``synth_commands``: ``{name: function}`` mounted as ``affectlens synth <name>``;
  * ``top_commands``: ``{name: function}`` mounted at the top (e.g. ``affectlens anonymize``).
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

try:  # Typer 0.2x vendors its own click: its usage errors are not click's
    from typer._click.exceptions import (
        BadParameter,
        MissingParameter,
        NoArgsIsHelpError,
        UsageError,
    )
except ImportError:  # pragma: no cover - older Typer on the real click
    from click.exceptions import (
        BadParameter,
        MissingParameter,
        NoArgsIsHelpError,
        UsageError,
    )

from affectlens import interrupt
from affectlens.errors import AffectlensError
from affectlens.report import console as report_console
from affectlens.report.console import error_line

ROOMS = ("group", "expression", "spontaneity", "videotag", "privacy")

app = typer.Typer(help="Privacy-first multimodal affect and video understanding.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
synth_app = typer.Typer(help="Write synthetic datasets in the real on-disk formats.", no_args_is_help=True)
app.add_typer(synth_app, name="synth")
# every command prints through these two: user strings are never read as markup, lines never wrap
console = report_console.stdout
err_console = report_console.stderr


@app.command()
def probe(files: List[Path] = typer.Argument(..., help="Media files to describe."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")):
    """Describe media files: duration, frame rate (and whether it varies), frames, size, rotation, audio.

    A file that is cut short (fewer frames than its container declares) is described as it is,
    marked TRUNCATED, and reported on stderr like a file that cannot be read (exit 1)."""
    from affectlens.media.video import probe as probe_file

    rows, failed = [], []
    for f in files:
        try:
            info = probe_file(f)
        except AffectlensError as e:
            failed.append(str(e))
            continue
        rows.append(info.to_dict())
        if info.truncated:
            failed.append(f"{f}: truncated: {info.frames_missing} of the {info.frame_count + info.frames_missing} "
                          f"frames its container declares are missing")
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        table = Table("file", "duration s", "fps", "VFR", "frames", "size", "rot", "audio")
        for r in rows:
            a = r["audio"]
            audio = f"{a['sample_rate']} Hz × {a['channels']} ({a['codec']})" if a else "none"
            table.add_row(Path(r["path"]).name, f"{r['duration']:.3f}", f"{r['fps']:.3f}",
                          "yes" if r["variable_fps"] else "no",
                          f"{r['frame_count']}/{r['frame_count'] + r['frames_missing']} TRUNCATED" if r["truncated"]
                          else str(r["frame_count"]),
                          f"{r['width']}×{r['height']}", str(r["rotation"]), audio)
        console.print(table)
    for msg in failed:
        error_line(msg)
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
    """Console entry point: bad input prints one line naming the file and exits 1.

    A usage error (unknown option, a value out of range) is one line too, exit 2; an unexpected
    exception is one line naming its type, exit 70 (``AFFECTLENS_TRACEBACK=1`` re-raises it).
    """
    interrupt.install()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line
            code = app(args=argv, prog_name="affectlens", standalone_mode=False)
        if interrupt.interrupted():  # however a command surfaced the interrupt, it was one
            sys.exit(130)
        if isinstance(code, int) and code:
            sys.exit(code)
    except SystemExit as e:  # Lightning exits 1 on Ctrl-C; a batch may have ended its summary
        sys.exit(130 if interrupt.interrupted() else e.code)
    except AffectlensError as e:
        if interrupt.interrupted():
            sys.exit(130)
        error_line(e)
        sys.exit(1)
    except typer.Exit as e:
        sys.exit(130 if interrupt.interrupted() else e.exit_code)
    except typer.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except NoArgsIsHelpError as e:  # a bare group: its help, as click prints it
        e.show()
        sys.exit(e.exit_code)
    except UsageError as e:
        error_line(_usage_line(e))
        sys.exit(e.exit_code)
    except BrokenPipeError:  # `affectlens ... | head`: stop quietly
        sys.stderr = open(os.devnull, "w")
        sys.exit(1)
    except Exception as e:
        if interrupt.interrupted():
            sys.exit(130)
        if os.environ.get("AFFECTLENS_TRACEBACK"):
            raise
        first = (str(e).strip().splitlines() or [""])[0]
        error_line(f"internal error, please report it: {type(e).__name__}" + (f": {first}" if first else "")
                   + " (AFFECTLENS_TRACEBACK=1 shows where)")
        sys.exit(70)


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A Python warning as one ``warning:`` line (not two lines with the source that raised it)."""
    from affectlens.report.console import warning_line

    warning_line(message if issubclass(category, UserWarning) else f"{category.__name__}: {message}")


def _usage_line(e: UsageError) -> str:
    """One line for a usage error: ``--frames: 0 is not >= 1 (see 'affectlens expression predict --help')``."""
    msg = e.format_message()
    param = getattr(e, "param", None)
    hint = getattr(e, "param_hint", None)
    if isinstance(e, MissingParameter):
        pass
    elif isinstance(e, BadParameter) and (param is not None or hint):
        name = hint if isinstance(hint, str) else "/".join(getattr(param, "opts", None) or [param.human_readable_name])
        msg = f"{name}: {_bad_value(e)}"
    elif msg.startswith("Invalid value: "):
        msg = msg[len("Invalid value: "):]
    ctx = getattr(e, "ctx", None)
    return msg.rstrip(".") + (f" (see '{ctx.command_path} --help')" if ctx is not None else "")


def _bad_value(e: BadParameter) -> str:
    """The reason a value was refused, naming the value (Typer validates through pydantic)."""
    cause = e.__cause__
    errors = cause.errors() if hasattr(cause, "errors") else []
    if not errors:
        return e.message
    err, words = errors[0], {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=",
                             "less_than": "<"}
    value, kind, ctx = err.get("input"), err.get("type", ""), err.get("ctx") or {}
    if kind in words and ctx:
        return f"{value} is not {words[kind]} {next(iter(ctx.values()))}"
    if kind == "int_parsing":
        return f"{value!r} is not an integer"
    if kind == "float_parsing":
        return f"{value!r} is not a number"
    if kind == "literal_error":
        return f"{value!r} is not one of {ctx.get('expected', '')}"
    reason = str(err.get("msg", e.message)).removeprefix("Value error, ")
    return reason if value is None or repr(value) in reason or str(value) in reason else f"{value!r}: {reason}"


if __name__ == "__main__":
    main()
