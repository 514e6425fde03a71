"""``affectlens privacy train-attributes | train-reconstruct | evaluate``: paper 004's research pipeline.

Thin commands over the recipes in ``attributes.py``, ``reconstruct.py`` and ``evaluate.py``;
``register_commands(app)`` adds them to the privacy sub-app defined in ``privacy/cli.py``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from affectlens.cli_options import REPORT_OPTION, choice_option, hardware_options, real_option
from affectlens.training.hardware import Hardware

FRACTION_OPTION = real_option(None, "--fraction", min=0, max=1, min_open=True,
                              help="Share of each CelebA split used, its first part (the paper: the first 0.3).")
LR_OPTION = real_option(None, "--lr", min=0, max=10, min_open=True, help="Learning rate (Adam).")
RESUME_OPTION = typer.Option(True, "--resume/--no-resume",
                             help="Continue the run in --out from last.pt (a folder of other settings is refused); "
                                  "--no-resume starts over.")


@hardware_options
def train_attributes_command(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Flat YAML (configs/privacy_attributes_*.yaml)."),
    data: Optional[str] = typer.Option(None, "--data", help="CelebA folder (list_attr_celeba.txt, identity_CelebA.txt)."),
    out: Optional[str] = typer.Option(None, "--out", help="Run folder: last.pt / best.pt / metrics.json / plots."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Total epochs (re-run to resume from last.pt)."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="small | resnet18 | resnet50 (the paper's)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
    fraction: Optional[float] = FRACTION_OPTION, lr: Optional[float] = LR_OPTION,
    resume: bool = RESUME_OPTION, hardware: Hardware = None,
):
    """Stage 1: train the 40-attribute classifier; report held-out mean accuracy vs majority and paper.

    Trains through the engine: --out holds last.pt (resumable), best.pt (best validation epoch),
    metrics.csv and metrics.json."""
    from affectlens.config import load_config
    from affectlens.privacy.attributes import AttributeTrainConfig, train_attributes

    cfg = load_config(AttributeTrainConfig, config, data=data, out=out, epochs=epochs, backbone=backbone,
                      threads=threads, fraction=fraction, lr=lr)
    m = train_attributes(cfg, hardware=hardware, resume=resume)
    if m is None:  # DDP: the other ranks only helped to train
        return
    typer.echo(f"test mean accuracy {m['test_mean_accuracy']:.4f} (held-out identities, n={m['n_test']}); "
               f"majority class {m['majority_baseline']:.4f}; paper ResNet-50 {m['paper_resnet50']:.4f}")


@hardware_options
def train_reconstruct_command(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Flat YAML (configs/privacy_reconstruct_*.yaml)."),
    data: Optional[str] = typer.Option(None, "--data", help="CelebA folder."),
    out: Optional[str] = typer.Option(None, "--out", help="Run folder: last.pt / best.pt / metrics.json."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Total epochs (re-run to resume from last.pt)."),
    landmark_cache: Optional[str] = typer.Option(None, "--cache", help="Landmark cache .npz (default: user cache dir)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
    fraction: Optional[float] = FRACTION_OPTION, lr: Optional[float] = LR_OPTION,
    resume: bool = RESUME_OPTION, hardware: Hardware = None,
):
    """Stage 2: train the 111-channel U-Net with 1 − SSIM; report test SSIM vs the paper's 0.8752.

    Trains through the engine: --out holds last.pt (resumable), best.pt (best validation epoch),
    metrics.csv and metrics.json."""
    from affectlens.config import load_config
    from affectlens.privacy.reconstruct import ReconTrainConfig, train_reconstruct

    cfg = load_config(ReconTrainConfig, config, data=data, out=out, epochs=epochs, landmark_cache=landmark_cache,
                      threads=threads, fraction=fraction, lr=lr)
    m = train_reconstruct(cfg, hardware=hardware, resume=resume)
    if m is None:  # DDP: the other ranks only helped to train
        return
    typer.echo(f"test SSIM {m['test_ssim']:.4f} (n={m['n_test']}); context-only fill {m['context_only_ssim']:.4f}; "
               f"paper {m['paper_test_ssim']:.4f}")


@hardware_options
def evaluate_command(
    recon: Path = typer.Option(Path("runs/privacy/reconstruct_cpu/best.pt"), "--recon", help="Stage-2 checkpoint."),
    attributes: Path = typer.Option(Path("runs/privacy/attributes_cpu/best.pt"), "--attributes",
                                    help="Stage-1 classifier checkpoint."),
    data: str = typer.Option("../shared/data/celeba", "--data", help="CelebA folder."),
    out: str = typer.Option("runs/privacy/evaluate", "--out", help="Folder for metrics.json, table.md, samples.png."),
    max_images: int = typer.Option(240, "--max-images", help="Probe photos for the dlib attack (whole identities)."),
    expression: Optional[str] = typer.Option(None, "--expression", help="Expression-room best.pt (default: fer's net)."),
    landmark_cache: Optional[str] = typer.Option(None, "--cache", help="Landmark cache .npz."),
    recognizer: str = choice_option("small", "--recognizer", choices=("small", "paper"),
                                    help="The attacking recogniser: small (CPU) or paper (AlexNet at 227 × 227 + 6 dense)."),
    recognizer_epochs: int = typer.Option(80, "--recognizer-epochs", min=1, max=100_000),
    report: Path | None = REPORT_OPTION, resume: bool = RESUME_OPTION, hardware: Hardware = None,
):
    """Obfuscate vs blur vs pixelate on held-out identities: recognisers, detection, SSIM, expression, attributes.

    The paper's recogniser is trained first, through the engine, into --out/recognizer/ (the
    hardware options say where; --resume continues it)."""
    from affectlens.privacy.evaluate import EvalConfig, evaluate_obfuscation

    cfg = EvalConfig(data=data, out=out, recon=str(recon), attributes=str(attributes), max_images=max_images,
                     expression=expression, landmark_cache=landmark_cache, recognizer=recognizer,
                     recognizer_epochs=recognizer_epochs)
    metrics = evaluate_obfuscation(cfg, log=typer.echo, hardware=hardware, resume=resume)
    if metrics is None:  # DDP: the other ranks only helped to train the recogniser
        return
    typer.echo((Path(out) / "table.md").read_text(encoding="utf-8"))
    if report is not None:
        _write_evaluate_report(report, metrics, Path(out))
        typer.echo(f"report -> {report}")


def _write_evaluate_report(path: Path, metrics: dict, out: Path) -> None:
    """The method × measure table (the paper's comparison) and the sample grid, in one HTML page."""
    from affectlens.privacy.evaluate import COLUMNS
    from affectlens.report.html import write_eval_report

    rows = [{"method": name, **{label: r.get(key) for key, label in COLUMNS}} for name, r in metrics["methods"].items()]
    rec = metrics.get("recognizer", {})
    summary = {"probe photos": metrics.get("n_probes"), "held-out identities": metrics.get("n_identities"),
               "recogniser train photos": rec.get("n_train"), "recogniser test photos": rec.get("n_test"),
               "paper recogniser, original": rec.get("paper_original"),
               "paper recogniser, obfuscated (4 attrs)": rec.get("paper_obfuscated_4"),
               "expression model": metrics.get("expression_model")}
    samples = out / "samples.png"
    write_eval_report(path, {k: v for k, v in summary.items() if v is not None},
                      title="privacy — identity obfuscation vs blur and pixelate",
                      notes="Attacks: the paper's person recogniser and dlib's 128-d face encoder; utility: face "
                            "still detected, SSIM outside the face, expression and other attributes kept.",
                      tables={"Methods": rows},
                      images=[(samples, "one row per photo, one column per method")] if samples.is_file() else ())


def register_commands(app: typer.Typer) -> None:
    app.command("train-attributes")(train_attributes_command)
    app.command("train-reconstruct")(train_reconstruct_command)
    app.command("evaluate")(evaluate_command)
