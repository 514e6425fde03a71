"""``affectlens anonymize``: a thin command over ``affectlens.privacy.anonymize``.

Other privacy commands (the ``affectlens privacy ...`` sub-app) are added to ``app`` below;
extra top-level commands to ``top_commands``.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import typer

from affectlens.cli_options import ADDRESS_OPTION, BACKEND_OPTION, WORKERS_OPTION, choice_option

app = typer.Typer(help="Face anonymization and identity obfuscation (paper 004).", no_args_is_help=True)


def anonymize_command(
    src: list[Path] = typer.Argument(..., help="Images, videos or folders (searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file (one input) or folder; never an input."),
    method: str = typer.Option("blur", "--method", "-m", help="blur | pixelate | solid | obfuscate"),
    mask: str = typer.Option("ellipse", "--mask", help="ellipse | box"),
    margin: float = typer.Option(0.25, "--margin", help="Share of the face box added on each side."),
    threshold: float = typer.Option(0.2, "--threshold", "-t", help="CenterFace score threshold, strictly between 0 and 1."),
    detector: str = typer.Option("centerface", "--detector", help="centerface | haar"),
    det_size: int | None = typer.Option(480, "--det-size", help="Longer side of video frames for detection, >= 320 (0 = full size)."),
    detect_every: int = typer.Option(4, "--detect-every", help="Detect on every n-th video frame, 1 to 4; tracking fills the rest (AnonymizeConfig.detect_every)."),
    resume: bool = typer.Option(True, "--resume/--no-resume",
                                help="Skip files already done with these options; redo (and say so) ones done otherwise."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON list of per-file results on stdout."),
    recon: Path = typer.Option(Path("runs/privacy/reconstruct_cpu/best.pt"), "--recon",
                               help="obfuscate: stage-2 U-Net checkpoint (affectlens privacy train-reconstruct)."),
    attributes: Path = typer.Option(Path("runs/privacy/attributes_cpu/best.pt"), "--attributes",
                                    help="obfuscate: stage-1 attribute classifier (affectlens privacy train-attributes)."),
    flip: str = typer.Option("Pointy_Nose,Smiling,Young,Big_Nose", "--flip",
                             help="obfuscate: attributes to invert (comma list or 'all'); Male & co. never change."),
    obfuscate_output: str = choice_option("blended", "--obfuscate-output", choices=("blended", "generated"),
                                          help="obfuscate: blend the regenerated face into the original (blended) "
                                               "or keep the network's whole regenerated crop (generated, the paper's)."),
    backend: str = BACKEND_OPTION, address: str | None = ADDRESS_OPTION, workers: int | None = WORKERS_OPTION,
):
    """Blur, pixelate or black out every face; videos keep frames, timestamps and audio.

    --backend ray spreads the files over Ray workers (one file per task) with the same resume,
    outputs and failure report as the default single process.
    """
    from affectlens.privacy.anonymize import AnonymizeConfig, anonymize

    options = {"method": method, "mask": mask, "margin": margin, "detector": detector, "threshold": threshold,
               "det_size": det_size, "detect_every": detect_every}
    AnonymizeConfig(**options)  # refuses values that weaken detection, before any work (privacy fails closed)
    obfuscate = (str(recon), str(attributes), flip, margin, obfuscate_output) if method == "obfuscate" else None
    if obfuscate is not None:  # paper 004: regenerate faces with attributes flipped (here for the resume key,
        _register_obfuscate(*obfuscate)  # in each Ray worker through ``setup`` too)
    if backend != "local":
        from affectlens.privacy.anonymize import anonymize_batch

        setup = functools.partial(_register_obfuscate, *obfuscate) if obfuscate is not None else None
        results = anonymize_batch(src, out, backend=backend, address=address, workers=workers, resume=resume,
                                  progress=not as_json, setup=setup, **options)
    else:
        results = anonymize(src, out, resume=resume, progress=not as_json, errors="collect", **options)
    _print_results(results, as_json)


def _print_results(results: list, as_json: bool) -> None:
    """The per-file table (or JSON), one line per note, faceless or failed file (names shown
    literally, control characters escaped: ``affectlens.report.console``), exit 1 when any failed."""
    from rich.table import Table

    from affectlens.report.console import (
        one_line,
        problem_lines,
        stderr,
        stdout,
        warning_line,
    )

    if as_json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        table = Table("input", "output", "status", "frames", "faces", "fps")
        for r in results:
            table.add_row(one_line(r.src), one_line(r.dst), r.status, str(r.frames), str(r.faces), f"{r.fps:.1f}")
        stdout.print(table)
    for r in results:
        if r.note:  # e.g. redone because the options changed since the last run
            warning_line(f"{r.src}: {r.note}", label="note")
    faceless = [r for r in results if r.status == "done" and r.faces == 0]
    for r in faceless:  # said, not hidden: the output is a plain copy of what the detector saw
        warning_line(f"{r.src}: no face detected in {r.frames} {'frame' if r.frames == 1 else 'frames'}; "
                     f"nothing was masked")
    if faceless:
        stderr.print(f"{len(faceless)} of {len(results)} files had no detected face")
    if problem_lines([r.error for r in results if r.status == "failed"], f"of {len(results)} files"):
        raise typer.Exit(1)


@functools.cache
def _register_obfuscate(recon: str, attributes: str, flip: str, margin: float, output: str = "blended") -> None:
    """Load the obfuscation models once per process (the driver, or each Ray worker)."""
    from affectlens.privacy.obfuscate import register_obfuscate

    register_obfuscate(Path(recon), Path(attributes), flip, box_margin=margin, output=output)


top_commands = {"anonymize": anonymize_command}

from affectlens.privacy.research_cli import register_commands

register_commands(app)
