"""``affectlens expression train|eval|predict`` — thin calls into recipe.py and predict.py."""
from __future__ import annotations

from pathlib import Path

import typer

from affectlens.cli_options import (
    ADDRESS_OPTION, BACKEND_OPTION, REPORT_OPTION, WORKERS_OPTION, choice_option, hardware_options, real_option,
)
from affectlens.expression.data import LABEL_MODES, USAGES
from affectlens.expression.model import POOLS
from affectlens.expression.predict import DEFAULT_LABEL_SET, DETECTORS, LABEL_SETS, TTA_MODES
from affectlens.report.console import one_line, problem_lines, stdout
from affectlens.scale import check_output
from affectlens.training.hardware import Hardware

app = typer.Typer(help="Facial expression (CNN-BiLSTM, paper 002): train on FER2013 or FER+, evaluate, predict.",
                  no_args_is_help=True)


@app.command()
@hardware_options
def train(config: Path | None = typer.Option(None, help="Flat YAML recipe, e.g. configs/expression_cnn_bilstm.yaml."),
          data: str | None = typer.Option(None, help="fer2013.csv or the folder with train/ and test/."),
          out: str | None = typer.Option(None, help="Run folder (last.pt, best.pt, metrics.csv); resumes if present."),
          variant: str | None = typer.Option(None, help="cnn_bilstm | cnn | bilstm"),
          size: str | None = typer.Option(None, help="tiny | compact | small | base"),
          pool: str | None = choice_option(None, "--pool", choices=POOLS,
                                           help="How the BiLSTM's outputs are pooled: mean | attention."),
          last_pool: bool | None = typer.Option(None, "--last-pool/--no-last-pool",
                                                help="--no-last-pool: the BiLSTM reads the map before the last "
                                                     "max-pool (5×5 = 25 steps instead of 2×2 for 40-px faces)."),
          feature_map: int | None = typer.Option(None, min=0, help="Feature-mapping layer width before the classifier (0 = none)."),
          epochs: int | None = typer.Option(None, min=1, help="Total epochs (a resumed run may change it before its decay phase)."),
          threads: int | None = typer.Option(None, min=1, help="torch CPU threads."),
          labels: str | None = choice_option(None, "--labels", choices=LABEL_MODES,
                                             help="fer2013 (7 classes) or a FER+ protocol on its 8 classes: "
                                                  "ferplus-majority | ferplus-soft | ferplus-pld."),
          init: Path | None = typer.Option(None, help="Fine-tune: start from this best.pt (same architecture; "
                                                      "a classifier of the other label set is mapped by emotion)."),
          resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from OUT/last.pt."),
          hardware: Hardware = None):
    """Train on Training, keep the best PublicTest epoch (best.pt); resumable from last.pt.

    Runs on the training engine: --accelerator gpu, --devices, --num-nodes, --strategy ddp and
    --precision work as in every room (docs/training.md).
    """
    from affectlens.expression.recipe import load_train_config
    from affectlens.expression.recipe import train as run

    if init is not None and not init.is_file():
        raise typer.BadParameter(f"{init}: no such checkpoint", param_hint="--init")
    cfg = load_train_config(config, data=data, out=out, variant=variant, size=size, epochs=epochs, threads=threads,
                            labels=labels, pool=pool, last_pool=last_pool, feature_map=feature_map,
                            init=str(init) if init else None)
    res = run(cfg, hardware=hardware, resume=resume)
    if res.is_global_zero:
        typer.echo(f"best PublicTest accuracy {res.best['value']:.4f} at epoch {res.best['epoch']} -> {res.best_path}")


@app.command()
def ensemble(checkpoints: list[Path] = typer.Argument(..., help="Two or more best.pt that read the same input (widths and variants may differ); an ensemble adds its members."),
             out: Path = typer.Option(..., "--out", "-o", help="The combined checkpoint to write.")):
    """Combine trained nets into one checkpoint whose prediction is their mean class probability."""
    from affectlens.expression.recipe import combine
    from affectlens.training import load_checkpoint

    if len(checkpoints) < 2:
        raise typer.BadParameter("give two or more checkpoints to combine")
    check_output(out, inputs=checkpoints)
    written = combine(checkpoints, out)
    members = load_checkpoint(written)["extra"]["members"]
    stdout.print(f"wrote {one_line(written)} ({members} members)")


LABEL_SET_OPTION = choice_option(DEFAULT_LABEL_SET, "--label-set", choices=LABEL_SETS,
                                 help="Which shipped model: ferplus (8 classes, FER+ votes) or fer2013 (7 classes). "
                                      "--weights wins.")


@app.command("eval")
def evaluate(weights: Path | None = typer.Option(None, help="Checkpoint (default: the shipped model of --label-set)."),
             label_set: str = LABEL_SET_OPTION,
             data: str = typer.Option("../shared/data/fer2013", help="fer2013.csv or the image-folder layout."),
             out: Path = typer.Option(Path("runs/expression/eval"), help="Folder for metrics.json and the PNGs."),
             split: str = choice_option("PrivateTest", choices=USAGES, help="Training | PublicTest | PrivateTest"),
             tta: list[str] = choice_option(["none", "flip", "tencrop"], choices=TTA_MODES,
                                            help="Test-time augmentation modes to score (repeatable)."),
             report: Path | None = REPORT_OPTION):
    """Accuracy, macro-F1, per-class P/R/F1 and the confusion matrix (counts), as JSON and PNG."""
    from affectlens.errors import DataError
    from affectlens.expression.data import load_fer
    from affectlens.expression.recipe import evaluate as run

    check_output(out, kind="dir", inputs=[data])
    if report is not None:
        check_output(report, inputs=[data])
    fer = load_fer(data)
    if not len(fer.split(split)):
        raise DataError(data, f"the {split} split is empty (nothing to evaluate)")
    res = run(weights, data, out, split=split, tta=tta, fer=fer, label_set=label_set)
    for mode, rep in res["reports"].items():
        stdout.print(f"{split} TTA={mode:8s} accuracy {rep['accuracy']:.4f}  macro-F1 {rep['macro_f1']:.4f}")
    stdout.print(f"wrote {one_line(out / 'metrics.json')}, {one_line(out / 'per_class.png')}, "
                 f"{one_line(out / 'confusion_matrix.png')}")
    if report is not None:
        from affectlens.report.html import write_eval_report

        rows = [{"TTA": m, "accuracy": r["accuracy"], "macro-F1": r["macro_f1"]} for m, r in res["reports"].items()]
        write_eval_report(report, res["reports"][tta[-1]], title=f"expression — {res['variant']}, {split}",
                          notes=f"weights `{res['weights']}` on `{data}` ({res['n']} faces); per-class table and "
                                f"confusion matrix with TTA {tta[-1]}",
                          tables={"Test-time augmentation": rows}, history=_run_history(weights))
        stdout.print(f"report -> {one_line(report)}")


def _run_history(weights: Path | None) -> dict | None:
    """Training curves from the run folder's metrics.json (written by the training engine), if any."""
    import json

    path = weights.parent / "metrics.json" if weights is not None else None
    if path is None or not path.is_file():
        return None
    history = json.loads(path.read_text(encoding="utf-8")).get("history") or {}
    return {k: v for k, v in history.items() if k != "epoch_seconds"} or None


@app.command()
def predict(paths: list[Path] = typer.Argument(..., help="Images, videos or folders of them."),
            out: Path = typer.Option(Path("expression"), help="Output stem: writes OUT.csv and OUT.json."),
            weights: Path | None = typer.Option(None, help="Checkpoint (default: the shipped model of --label-set)."),
            label_set: str = LABEL_SET_OPTION,
            detector: str = choice_option("centerface", choices=DETECTORS,
                                          help="Face detector; none = every input is already one face crop."),
            crops: bool = typer.Option(False, "--crops", help="Inputs are face crops (one face per file; = --detector none)."),
            frames: int = typer.Option(16, min=1, max=10_000, help="Frames sampled per video (t_i = (i + 0.5)·D/n)."),
            tta: str = choice_option("flip", choices=TTA_MODES, help="Test-time augmentation."),
            threshold: float = real_option(0.5, min=0, max=1, min_open=True, max_open=True,
                                           help="Face detector threshold."),
            annotate: bool = typer.Option(False, "--annotate", help="Also write annotated images/videos to OUT_annotated/."),
            backend: str = BACKEND_OPTION, address: str | None = ADDRESS_OPTION, workers: int | None = WORKERS_OPTION):
    """Detect faces, align to 48×48 grey, classify; one CSV/JSON row per face per frame.

    A bad file is one line naming it and the others go on (exit 1); outputs are checked first."""
    from affectlens.expression.predict import output_paths, predict_paths

    results, failures = predict_paths(paths, out, weights=weights, detector="none" if crops else detector,
                                      n_frames=frames, tta=tta,
                                      annotate=annotate, threshold=threshold, backend=backend, address=address,
                                      num_workers=workers, label_set=label_set)
    n_faces = sum(len(r["rows"]) for r in results)
    csv_path, json_path, _ = output_paths(out)
    stdout.print(f"{len(results)} files, {n_faces} face rows -> {one_line(csv_path)}, {one_line(json_path)}")
    if problem_lines(failures, "file(s)"):
        raise typer.Exit(1)
