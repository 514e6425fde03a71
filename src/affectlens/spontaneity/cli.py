"""``affectlens spontaneity …`` and ``affectlens synth spontaneity``: thin calls into the recipe."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from affectlens.cli_options import (
    ADDRESS_OPTION, BACKEND_OPTION, REPORT_OPTION, WORKERS_OPTION, choice_option, hardware_options,
    real_option,
)
from affectlens.cli_options import RESUME_OPTION as BATCH_RESUME_OPTION
from affectlens.report.console import one_line, stderr, stdout
from affectlens.scale import check_output
from affectlens.training.hardware import Hardware

app = typer.Typer(help="Posed vs spontaneous expressions from onset/apex face pairs (comparison-layer CNNs).",
                  no_args_is_help=True)
console = stdout  # user strings are printed literally (never read as markup), lines never wrap
err_console = stderr


def _seeds(seeds: int, first_seed: int) -> list:
    return list(range(first_seed, first_seed + seeds))


def _counts(text: str) -> list:
    try:
        counts = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        counts = []
    if not counts or any(c < 1 for c in counts):
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of subject counts >= 1, e.g. 5,10,20",
                                 param_hint="--counts")
    return sorted(set(counts))


@app.command()
def manifest(root: Path = typer.Argument(..., help="USTC-NVIE-style tree: ROOT/posed|spontaneous/<subject>/…/<sample>/."),
             out: Path = typer.Option(Path("manifest.csv"), "--out", "-o", help="Manifest CSV to write."),
             subset: Optional[Path] = typer.Option(None, "--subset", help="Sample ids to keep, one per line "
                                                   "(e.g. the paper's 1,028-sample subset)."),
             show_discarded: bool = typer.Option(False, "--list-discarded", help="Also print each discarded sample.")):
    """Build an onset/apex manifest (subject, onset, apex, label) from a USTC-NVIE-style folder tree.

    Samples without an onset or an apex frame are discarded (as the paper does) and counted."""
    from affectlens.spontaneity.data import read_subset, scan_ustc_nvie, write_manifest

    check_output(out, inputs=[root, *([subset] if subset else [])])
    samples, discarded = scan_ustc_nvie(root, read_subset(subset) if subset else None)
    write_manifest(out, samples)
    n_sp = sum(s.label for s in samples)
    console.print(f"{len(samples)} pairs ({len(samples) - n_sp} posed, {n_sp} spontaneous) from "
                  f"{len({s.subject for s in samples})} subjects → {one_line(out)}; {len(discarded)} discarded")
    for line in discarded if show_discarded else ():
        console.print(f"discarded: {one_line(line)}")


@app.command()
def preprocess(manifest_path: Path = typer.Argument(..., metavar="MANIFEST", help="Manifest of raw frames."),
               out: Path = typer.Option(..., "--out", "-o", help="Folder for crops/ and the new manifest.csv."),
               detector: str = choice_option("centerface", choices=("centerface", "haar"),
                                             help="centerface | haar (Haar has no eye points: "
                                                  "centerface is the one that aligns)."),
               backend: str = BACKEND_OPTION, address: Optional[str] = ADDRESS_OPTION,
               workers: Optional[int] = WORKERS_OPTION, resume: bool = BATCH_RESUME_OPTION):
    """Raw frames → face detection → eye-line alignment → 44×44 grey crops, plus a new manifest.

    Goes on past bad files, reports them and exits 1; pairs whose crops exist are skipped."""
    from affectlens.spontaneity.data import preprocess_manifest

    check_output(out, kind="dir", inputs=[manifest_path])
    path, res = preprocess_manifest(manifest_path, out, detector, backend=backend, address=address,
                                    num_workers=workers, resume=resume)
    res.print_summary(title="spontaneity preprocess")
    console.print(f"wrote {one_line(path)}")
    raise typer.Exit(res.exit_code)


RESUME_OPTION = typer.Option(True, "--resume/--no-resume",
                             help="Continue the nets and folds already in --out (a folder of other settings is "
                                  "refused); --no-resume trains them anew.")


@app.command()
@hardware_options
def cv(manifest_path: Path = typer.Argument(..., metavar="MANIFEST", help="Manifest of 44×44 onset/apex crops."),
       config: Optional[Path] = typer.Option(None, "--config", help="configs/spontaneity_*.yaml (flags override it)."),
       protocol: Optional[str] = choice_option(None, choices=("kfold", "loso"),
                                               help="kfold (subject groups, default) | loso (leave one subject out)."),
       folds: Optional[int] = typer.Option(None, min=2, max=1000, help="Number of subject groups for kfold (default 10)."),
       seeds: Optional[int] = typer.Option(None, min=1, max=1000, help="Seeds to average over, never the best one (default 3)."),
       first_seed: Optional[int] = typer.Option(None, min=0, help="First seed (default 0)."),
       epochs: Optional[int] = typer.Option(None, min=1, max=100_000, help="Epochs per net (default 20)."),
       size: Optional[str] = choice_option(None, choices=("tiny", "small", "paper"),
                                           help="Net widths: tiny | small | paper (default small)."),
       batch_size: Optional[int] = typer.Option(None, min=1, max=65_536, help="(default 16)."),
       lr: Optional[float] = real_option(None, min=0, max=10, min_open=True, help="(default 3e-3)."),
       threads: Optional[int] = typer.Option(None, min=1, max=2, help="torch threads, at most 2 (default 1)."),
       out: Optional[Path] = typer.Option(None, "--out", "-o",
                                          help="Folder for results.json, errors.png and the nets' runs/ (resumable)."),
       report: Path | None = REPORT_OPTION, resume: bool = RESUME_OPTION, hardware: Hardware = None):
    """Subject-independent cross-validation of all nine methods; prints Table 1's layout beside the paper.

    Every net of every fold and seed is one run of the training engine under --out/runs/; re-running
    the command after an interruption goes on from the last finished fold."""
    from affectlens.spontaneity.recipe import (
        is_global_zero,
        load_cv_config,
        print_table,
    )
    from affectlens.spontaneity.recipe import cross_validate

    c = load_cv_config(config, protocol=protocol, folds=folds, seeds=seeds, first_seed=first_seed, epochs=epochs,
                       size=size, batch_size=batch_size, lr=lr, threads=threads)
    if out is not None:
        check_output(out, kind="dir", inputs=[manifest_path])
    if report is not None:
        check_output(report, inputs=[manifest_path])
    result = cross_validate(manifest_path, out, c.protocol, c.folds, _seeds(c.seeds, c.first_seed), c.train,
                            hardware=hardware, resume=resume)
    if not is_global_zero():  # DDP: the other ranks only helped to train
        return
    print_table(result, console)
    if out is not None:
        console.print(f"wrote {one_line(out / 'results.json')} and {one_line(out / 'errors.png')}")
    if report is not None:
        _write_cv_report(report, result, out)
        console.print(f"report → {one_line(report)}")


def _write_cv_report(path: Path, result: dict, out: Path | None) -> None:
    """Table 1 (ours beside the paper) as the ablation table, the error-bar chart as the figure."""
    import tempfile

    from affectlens.report.html import write_eval_report
    from affectlens.spontaneity.recipe import error_bars_png, table_rows

    loso = result["protocol"] == "loso"
    rows = [{"method": m, "paper" + (" SPOS (LOSO)" if loso else " subset / full"): paper,
             "ours: error % mean ± std(folds)": ours, "std(seeds)": float(seeds),
             "pooled error %": result["summary"][m]["pooled"]} for m, paper, ours, seeds in table_rows(result)]
    settings = {k: result[k] for k in ("protocol", "folds", "samples", "subjects")}
    with tempfile.TemporaryDirectory() as tmp:
        bars = out / "errors.png" if out is not None else Path(tmp) / "errors.png"
        if out is None:
            error_bars_png(result, bars)
        write_eval_report(path, settings, title=f"spontaneity — {result['protocol']} cross-validation",
                          notes=f"manifest `{result['manifest']}`, seeds {result['seeds']}; error rates averaged "
                                "over folds and seeds (never the best seed)",
                          tables={"Error rate per method (Table 1)": rows},
                          images=[(bars, "error rate per method, ours (± std over folds) beside the paper")])


@app.command()
@hardware_options
def train(manifest_path: Path = typer.Argument(..., metavar="MANIFEST"),
          out: Path = typer.Option(..., "--out", "-o", help="Folder for the nine model files."),
          config: Optional[Path] = typer.Option(None, "--config", help="configs/spontaneity_*.yaml (flags override it)."),
          epochs: Optional[int] = typer.Option(None), size: Optional[str] = typer.Option(None, help="tiny | small | paper"),
          batch_size: Optional[int] = typer.Option(None), lr: Optional[float] = typer.Option(None),
          seed: int = typer.Option(0), threads: Optional[int] = typer.Option(None),
          resume: bool = RESUME_OPTION, hardware: Hardware = None):
    """Train the seven nets and both -SVM ensembles on every pair, for `predict`.

    Each net is one run of the training engine in --out/runs/<net>/ (resumable); its final weights
    are --out/<net>.pt, beside the two -SVM files."""
    from affectlens.spontaneity.recipe import is_global_zero, load_cv_config
    from affectlens.spontaneity.recipe import train_all

    c = load_cv_config(config, epochs=epochs, size=size, batch_size=batch_size, lr=lr, threads=threads)
    paths = train_all(manifest_path, out, c.train, seed, resume, hardware=hardware)
    if is_global_zero():
        console.print(f"wrote {len(paths)} models to {one_line(out)}")


@app.command()
def predict(onset: Path = typer.Argument(..., help="Onset image, or a video (with --onset-frame/--apex-frame)."),
            apex: Optional[Path] = typer.Argument(None, help="Apex image (omit for a video)."),
            checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="A net .pt or a folder from `train`."),
            method: str = typer.Option("CompCNN-Comb-SVM", help="Which model of a `train` folder."),
            onset_frame: Optional[int] = typer.Option(None, min=0, help="Video: 0-based onset frame index."),
            apex_frame: Optional[int] = typer.Option(None, min=0, help="Video: 0-based apex frame index."),
            as_json: bool = typer.Option(False, "--json")):
    """Posed or spontaneous, with a probability, for one onset/apex pair (images or two video frames)."""
    from affectlens.spontaneity.predict import image_pair, predict_pair, video_pair

    if apex is None:
        if onset_frame is None or apex_frame is None:
            raise typer.BadParameter("give ONSET APEX images, or a video with --onset-frame and --apex-frame")
        o, a = video_pair(onset, onset_frame, apex_frame)
    else:
        o, a = image_pair(onset, apex)
    result = predict_pair(o, a, checkpoint, method)
    if as_json:
        print(json.dumps(result))
    else:
        p = result["p_spontaneous"] if result["label"] == "spontaneous" else result["p_posed"]
        console.print(f"{result['label']} (p = {p:.3f}, {result['method']})")


def synth_spontaneity(out: Path = typer.Argument(..., help="Folder for the tree of pairs and manifest.csv."),
                      subjects: int = typer.Option(40, min=1, max=100_000, help="Synthetic subjects."),
                      per_subject: int = typer.Option(8, min=2, max=10_000,
                                                      help="Pairs per subject (half posed, half spontaneous)."),
                      difficulty: float = real_option(0.5, min=0, max=1,
                                                      help="0 separates the classes, 1 mixes their cues."),
                      seed: int = typer.Option(0, min=0)):
    """Synthetic onset/apex 44×44 face pairs (posed: lopsided, mouth-driven; spontaneous: eyes move too)."""
    from affectlens.spontaneity.synth import write_synthetic

    check_output(out, kind="dir")
    path = write_synthetic(out, subjects, per_subject, seed, difficulty)
    console.print(f"wrote {subjects * per_subject} pairs and {one_line(path)}")


synth_commands = {"spontaneity": synth_spontaneity}


@app.command()
@hardware_options
def curve(manifest_path: Path = typer.Argument(..., metavar="MANIFEST", help="Manifest of 44×44 onset/apex crops."),
          out: Path = typer.Option(..., "--out", "-o", help="Folder for curve.json, fig4.png and the runs (resumable)."),
          counts: str = typer.Option("5,10,20,40", "--counts", help="Training subjects per fold, comma-separated."),
          config: Optional[Path] = typer.Option(None, "--config", help="configs/spontaneity_*.yaml (protocol, folds, nets)."),
          resume: bool = RESUME_OPTION, hardware: Hardware = None):
    """Fig. 4: the CV error of every method against the number of training subjects per fold."""
    from affectlens.spontaneity.recipe import learning_curve, load_cv_config

    wanted = _counts(counts)
    check_output(out, kind="dir", inputs=[manifest_path])
    c = load_cv_config(config)
    res = learning_curve(manifest_path, out, wanted, c.protocol, c.folds, _seeds(c.seeds, c.first_seed), c.train,
                         hardware=hardware, resume=resume)
    for m, errs in res["error_percent"].items():
        console.print(f"{m:18}" + "  ".join(f"{n}: {e:.1f} %" for n, e in zip(res["counts"], errs)))
    console.print(f"wrote {one_line(out / 'curve.json')} and {one_line(out / 'fig4.png')}")

