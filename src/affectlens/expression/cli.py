"""``affectlens expression train|eval|predict`` — thin calls into recipe.py and predict.py."""
from __future__ import annotations

from pathlib import Path

import typer

from affectlens.report.html import REPORT_OPTION
from affectlens.training.options import (
    DEVICES_OPTION,
    NUM_NODES_OPTION,
    STRATEGY_OPTION,
)

app = typer.Typer(help="7-class facial expression (CNN-BiLSTM, paper 002): train on FER2013, evaluate, predict.",
                  no_args_is_help=True)


@app.command()
def train(config: Path | None = typer.Option(None, help="Flat YAML recipe, e.g. configs/expression_cnn_bilstm.yaml."),
          data: str | None = typer.Option(None, help="fer2013.csv or the folder with train/ and test/."),
          out: str | None = typer.Option(None, help="Run folder (last.pt, best.pt, train.log); resumes if present."),
          variant: str | None = typer.Option(None, help="cnn_bilstm | cnn | bilstm"),
          size: str | None = typer.Option(None, help="tiny | small | base"),
          epochs: int | None = typer.Option(None, help="Total epochs (a resumed run may change it before its decay phase)."),
          threads: int | None = typer.Option(None, help="torch CPU threads."),
          devices: str = DEVICES_OPTION, num_nodes: int = NUM_NODES_OPTION, strategy: str = STRATEGY_OPTION):
    """Train on Training, keep the best PublicTest epoch (best.pt); resumable from last.pt.

    Single process only (its own loop: batch augmentation, warmup-stable-decay LR): --devices,
    --num-nodes and --strategy must stay 1 / 1 / auto; any other value is refused with one line.
    """
    from affectlens.expression.recipe import load_train_config
    from affectlens.expression.recipe import train as run
    from affectlens.training.options import require_single_process

    require_single_process("expression train", devices, num_nodes, strategy)

    cfg = load_train_config(config, data=data, out=out, variant=variant, size=size, epochs=epochs, threads=threads)
    state = run(cfg)
    typer.echo(f"best PublicTest accuracy {state['best_acc']:.4f} at epoch {state['best_epoch']} -> {Path(cfg.out) / 'best.pt'}")


@app.command()
def ensemble(checkpoints: list[Path] = typer.Argument(..., help="Two or more best.pt that read the same input (widths and variants may differ)."),
             out: Path = typer.Option(..., "--out", "-o", help="The combined checkpoint to write.")):
    """Combine trained nets into one checkpoint whose prediction is their mean class probability."""
    from affectlens.expression.recipe import combine

    typer.echo(f"wrote {combine(checkpoints, out)} ({len(checkpoints)} members)")


@app.command("eval")
def evaluate(weights: Path | None = typer.Option(None, help="Checkpoint (default: the shipped weights)."),
             data: str = typer.Option("../shared/data/fer2013", help="fer2013.csv or the image-folder layout."),
             out: Path = typer.Option(Path("runs/expression/eval"), help="Folder for metrics.json and the PNGs."),
             split: str = typer.Option("PrivateTest", help="Training | PublicTest | PrivateTest"),
             tta: list[str] = typer.Option(["none", "flip", "tencrop"], help="Test-time augmentation modes to score."),
             report: Path | None = REPORT_OPTION):
    """Accuracy, macro-F1, per-class P/R/F1 and the confusion matrix (counts), as JSON and PNG."""
    from affectlens.expression.recipe import evaluate as run

    res = run(weights, data, out, split=split, tta=tta)
    for mode, rep in res["reports"].items():
        typer.echo(f"{split} TTA={mode:8s} accuracy {rep['accuracy']:.4f}  macro-F1 {rep['macro_f1']:.4f}")
    typer.echo(f"wrote {out / 'metrics.json'}, {out / 'per_class.png'}, {out / 'confusion_matrix.png'}")
    if report is not None:
        from affectlens.report.html import write_eval_report

        rows = [{"TTA": m, "accuracy": r["accuracy"], "macro-F1": r["macro_f1"]} for m, r in res["reports"].items()]
        write_eval_report(report, res["reports"][tta[-1]], title=f"expression — {res['variant']}, {split}",
                          notes=f"weights `{res['weights']}` on `{data}` ({res['n']} faces); per-class table and "
                                f"confusion matrix with TTA {tta[-1]}",
                          tables={"Test-time augmentation": rows}, history=_run_history(weights))
        typer.echo(f"report -> {report}")


def _run_history(weights: Path | None) -> dict | None:
    """Training curves from the run folder's history.json (written by `expression train`), if any."""
    import json

    path = weights.parent / "history.json" if weights is not None else None
    if path is None or not path.is_file():
        return None
    history = json.loads(path.read_text(encoding="utf-8")).get("history") or {}
    return {k: v for k, v in history.items() if k != "epoch_seconds"} or None


@app.command()
def predict(paths: list[Path] = typer.Argument(..., help="Images, videos or folders of them."),
            out: Path = typer.Option(Path("expression"), help="Output stem: writes OUT.csv and OUT.json."),
            weights: Path | None = typer.Option(None, help="Checkpoint (default: the shipped weights)."),
            detector: str = typer.Option("centerface", help="centerface | haar"),
            frames: int = typer.Option(16, help="Frames sampled per video (t_i = (i + 0.5)·D/n)."),
            tta: str = typer.Option("flip", help="none | flip | tencrop"),
            threshold: float = typer.Option(0.5, help="Face detector threshold."),
            annotate: bool = typer.Option(False, "--annotate", help="Also write annotated images/videos to OUT_annotated/.")):
    """Detect faces, align to 48×48 grey, classify; one CSV/JSON row per face per frame."""
    from affectlens.expression.predict import predict_paths

    results, failures = predict_paths(paths, out, weights=weights, detector=detector, n_frames=frames, tta=tta,
                                      annotate=annotate, threshold=threshold)
    n_faces = sum(len(r["rows"]) for r in results)
    typer.echo(f"{len(results)} files, {n_faces} face rows -> {out.with_suffix('.csv')}, {out.with_suffix('.json')}")
    for msg in failures:
        typer.echo(f"error: {msg}", err=True)
    if failures:
        raise typer.Exit(1)
