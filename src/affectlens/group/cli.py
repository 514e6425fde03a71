"""``affectlens group ...`` and ``affectlens synth group``: thin wrappers over recipe.py and synth.py."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from affectlens.cli_options import (
    ADDRESS_OPTION, BACKEND_OPTION, REPORT_OPTION, RESUME_OPTION, WORKERS_OPTION, choice_option,
    hardware_options, real_option,
)
from affectlens.report.console import error_line, one_line, stderr, stdout
from affectlens.scale import check_output
from affectlens.training.hardware import Hardware

app = typer.Typer(help="Group emotion (Positive / Neutral / Negative) from global frames + audio; privacy-compliant.",
                  no_args_is_help=True)
console = stdout  # user strings are printed literally (never read as markup), lines never wrap
err = stderr

DATA_HELP = "VGAF-layout folder (clips + a 'Vid_name Label' file), or the label file itself."


def _finish(problems: List[str], what: str, label: str = "skipped") -> None:
    """One line per bad row or file (naming it), a count, exit 1 — when there were any."""
    for p in problems:
        error_line(p, label=label)
    if problems:
        error_line(f"{len(problems)} {what} failed or were skipped", label="error")
        raise typer.Exit(1)


def _quiet(_: str) -> None:
    """A log for recipe calls whose failures the command reports itself (one line each, at the end)."""


@app.command()
def features(data: Path = typer.Argument(..., help=DATA_HELP),
             frames: int = typer.Option(5, "--frames", min=1, max=1000, help="Video frames per clip (5 or 75)."),
             audio_frames: int = typer.Option(0, "--audio-frames", min=0, max=1000,
                                              help="1-s audio windows per clip (0 = --frames)."),
             size: int = typer.Option(224, "--size", min=8, max=4096, help="Frame size in pixels (square)."),
             cache: Optional[Path] = typer.Option(None, "--cache", help="Cache folder (default DATA/cache)."),
             labels: Optional[Path] = typer.Option(None, "--labels", help="Label file, if not auto-detected."),
             clips: Optional[Path] = typer.Option(None, "--clips", help="Clip folder, if not auto-detected."),
             strict: bool = typer.Option(False, "--strict", help="A bad label row is fatal instead of skipped."),
             missing_audio: str = choice_option("error", "--missing-audio", choices=("error", "silence"),
                                                help="A clip without audio: error, or silence."),
             backend: str = BACKEND_OPTION, address: str | None = ADDRESS_OPTION,
             workers: int | None = WORKERS_OPTION, resume: bool = RESUME_OPTION):
    """Cache frames and log-mels of every clip (atomic, resumable, progress bar; --backend ray spreads clips)."""
    from affectlens.group.data import FeatureSpec, extract_features, read_vgaf

    index = read_vgaf(data, labels=labels, clips=clips, on_error="error" if strict else "skip")
    spec = FeatureSpec(frames, audio_frames or frames, size, missing_audio)
    cache = cache or (data if data.is_dir() else data.parent) / "cache"
    check_output(cache, kind="dir", inputs=[index.label_file, *(it.path for it in index.items)])
    r = extract_features(index.items, cache, spec, backend=backend, address=address, workers=workers,
                         resume=resume)
    console.print(f"{len(index.items)} clips: {r['written']} cached, {r['skipped_existing']} already cached, "
                  f"{len(r['failed'])} failed → {one_line(r['cache'])} ({r['backend']}, {r['seconds']:.1f} s)")
    _finish(index.errors + r["failed"], "rows/clips")


@app.command("train")
@hardware_options
def train_cmd(data: Optional[Path] = typer.Argument(None, help=DATA_HELP + " Omit to train on --synthetic only."),
              out: Path = typer.Option(..., "--out", help="Run folder (checkpoints, curves, eval)."),
              config: Optional[Path] = typer.Option(None, "--config", help="Flat YAML recipe, e.g. configs/group_paper.yaml."),
              val: Optional[Path] = typer.Option(None, "--val", help="Validation VGAF folder (evaluated once, on best.pt)."),
              select_on: Optional[str] = choice_option(None, "--select-on", choices=("train", "val"),
                                                       help="Choose best.pt on a held-out 10 % of the training clips "
                                                            "(train, default) or on --val (EmotiW practice)."),
              synthetic: Optional[Path] = typer.Option(None, "--synthetic", help="Synthetic VGAF-format folder to mix in."),
              synthetic_ratio: Optional[float] = typer.Option(None, "--synthetic-ratio", help="Share of synthetic clips (paper 0.3)."),
              size: Optional[str] = typer.Option(None, "--size", help="paper | base | tiny"),
              modality: Optional[str] = typer.Option(None, "--modality", help="audio | video | fusion"),
              head: Optional[str] = typer.Option(None, "--head", help="mean | flatten"),
              frames: Optional[int] = typer.Option(None, "--frames", help="5 or 75 video frames."),
              audio_frames: Optional[int] = typer.Option(None, "--audio-frames", help="5 or 75 audio frames."),
              epochs: Optional[int] = typer.Option(None, "--epochs"),
              lr: Optional[float] = typer.Option(None, "--lr"),
              optimizer: Optional[str] = typer.Option(None, "--optimizer", help="sgd | adamw"),
              loss: Optional[str] = typer.Option(None, "--loss", help="ce | focal"),
              freeze_vit_epochs: Optional[int] = typer.Option(None, "--freeze-vit-epochs"),
              vit_weights: Optional[str] = typer.Option(None, "--vit-weights", help="Local ViT weights file."),
              resume: bool = typer.Option(True, "--resume/--no-resume",
                                          help="Continue from OUT/last.pt (a folder made with other settings is refused)."),
              strict: bool = typer.Option(False, "--strict", help="A bad label row is fatal."),
              hardware: Hardware = None):
    """Train with the paper's recipe on one CPU, GPUs or DDP processes (checkpoints every epoch, exact resume).

    With --devices N or --num-nodes N every process runs this command; rank 0 alone evaluates and prints.
    """
    from affectlens.group.recipe import load_config, train

    if data is None and synthetic is None:
        raise typer.BadParameter("give DATA, --synthetic, or both")
    cfg = load_config(config, synthetic_ratio=synthetic_ratio, size=size, modality=modality, head=head, frames=frames,
                      audio_frames=audio_frames, epochs=epochs, lr=lr, optimizer=optimizer, loss=loss,
                      freeze_vit_epochs=freeze_vit_epochs, vit_weights=vit_weights, select_on=select_on)
    result = train(cfg, data, out, val=val, synthetic=synthetic, on_error="error" if strict else "skip",
                   resume=resume, log=console.print, hardware=hardware)
    if not result["is_global_zero"]:
        return
    if "eval" in result:
        console.print(f"validation accuracy {result['eval']['accuracy']:.4f}, macro-F1 {result['eval']['macro_f1']:.4f} "
                      f"(best.pt selected on {one_line(result['selected_on'])})")
    best = result["best_epoch"]
    chosen = (f"epoch {best['epoch']}, {best['metric']} {best['value']:.4f} on {one_line(result['selected_on'])}"
              if best["value"] is not None else "the last epoch: nothing to select on")
    console.print(f"{len(result['history'].get('train_loss', []))} epochs on {result['world_size']} process(es); "
                  f"checkpoints: {one_line(result['best'])} (best, {chosen}), {one_line(result['last'])} (last)")
    _finish(result["problems"], "rows/clips")


@app.command("eval")
def eval_cmd(checkpoint: Path = typer.Argument(..., help="best.pt / last.pt from 'group train'."),
             data: Path = typer.Argument(..., help=DATA_HELP),
             out: Path = typer.Option(Path("group-eval"), "--out"),
             strict: bool = typer.Option(False, "--strict"),
             report: Path | None = REPORT_OPTION):
    """Accuracy, per-class F1 and the confusion matrix (eval.json, confusion.png, per_class.png)."""
    from affectlens.group.recipe import evaluate

    check_output(out, kind="dir", inputs=[checkpoint, data])
    if report is not None:
        check_output(report, inputs=[checkpoint, data])
    r = evaluate(checkpoint, data, out, on_error="error" if strict else "skip", log=console.print)
    f1 = ", ".join(f"{k} {v['f1']:.3f}" for k, v in r["per_class"].items())
    console.print(f"n={r['n']} accuracy {r['accuracy']:.4f}  F1: {f1}  → {one_line(out / 'eval.json')}")
    if report is not None:
        from affectlens.report.html import write_eval_report

        write_eval_report(report, r, history=_run_history(checkpoint), title="group emotion — evaluation",
                          notes=f"checkpoint `{checkpoint}` on `{data}` ({r['n']} clips)")
        console.print(f"report → {one_line(report)}")
    _finish(r["problems"], "rows/clips")


def _run_history(checkpoint: Path) -> dict | None:
    """Training curves from the checkpoint's own per-epoch history (accuracies and losses)."""
    from affectlens.training.checkpoint import load_checkpoint

    history = load_checkpoint(checkpoint)["history"]
    return {k: v for k, v in history.items() if k.endswith(("_acc", "_loss"))} or None


@app.command("predict")
def predict_cmd(checkpoint: Path = typer.Argument(...),
                videos: List[Path] = typer.Argument(..., help="Any video files."),
                out: Path = typer.Option(Path("group-predict"), "--out"),
                window: float = real_option(5.0, "--window", min=0, max=86_400, min_open=True,
                                            help="Window length (s) of the timeline."),
                hop: float = real_option(2.5, "--hop", min=0, max=86_400, min_open=True,
                                         help="Hop (s) between timeline windows."),
                backend: str = BACKEND_OPTION, address: Optional[str] = ADDRESS_OPTION,
                workers: Optional[int] = WORKERS_OPTION):
    """Class probabilities per clip, or a timeline over sliding windows for long videos (JSON + CSV + PNG)."""
    from affectlens.group.recipe import predict

    r = predict(checkpoint, videos, out, window=window, hop=hop, log=_quiet, backend=backend, address=address,
                num_workers=workers)
    for res in r["results"]:
        probs = "  ".join(f"{k} {v:.3f}" for k, v in res["probs"].items())
        console.print(f"{one_line(Path(res['video']).name)}: {res['label']} ({probs}; {res['mode']}, "
                      f"{len(res['windows'])} windows)")
    console.print(f"checkpoint {one_line(checkpoint)} → {one_line(out)}/predictions.json, predictions.csv")
    _finish(r["failed"], "videos", label="error")


# the inputs of the paper's experiments (Tables 1 and 2)
_REAL = typer.Argument(..., help="Real training VGAF folder.")
_VAL = typer.Option(..., "--val", help="Validation VGAF folder.")
_SYNTHETIC = typer.Option(..., "--synthetic", help="Synthetic VGAF-format folder.")
_CONFIG = typer.Option(None, "--config", help="Flat YAML recipe, e.g. configs/group_paper.yaml.")


@app.command("ablation")
@hardware_options
def ablation_cmd(data: Path = _REAL, val: Path = _VAL, synthetic: Path = _SYNTHETIC,
                 out: Path = typer.Option(Path("group-ablation"), "--out"), config: Optional[Path] = _CONFIG,
                 frames: str = typer.Option("5,75", "--frames", help="Comma-separated frame counts."),
                 hardware: Hardware = None):
    """Train + evaluate Table 2's seven input combinations × frame counts; print ours beside the paper's."""
    from affectlens.group.ablation import ablation
    from affectlens.group.recipe import load_config

    counts = _frame_counts(frames)
    check_output(out, kind="dir", inputs=[data, val, synthetic])
    cfg = load_config(config)
    ablation(cfg, data, val, synthetic, out, frames=counts, log=console.print, hardware=hardware)


@app.command("sweep")
@hardware_options
def sweep_cmd(data: Path = _REAL, val: Path = _VAL, synthetic: Path = _SYNTHETIC,
              out: Path = typer.Option(Path("group-sweep"), "--out"), config: Optional[Path] = _CONFIG,
              modality: str = choice_option("video", "--modality", choices=("video", "fusion"),
                                            help="The model swept (the paper's Table 1: video)."),
              ratios: str = typer.Option("0.1,0.2,0.3,0.4,0.5", "--ratios",
                                         help="Comma-separated shares of synthetic clips in the training set."),
              hardware: Hardware = None):
    """Table 1: the synthetic-ratio sweep (10-50 %), each ratio trained and evaluated on --val; ours beside the paper's."""
    from affectlens.group.ablation import sweep
    from affectlens.group.recipe import load_config

    shares = _ratios(ratios)
    check_output(out, kind="dir", inputs=[data, val, synthetic])
    sweep(load_config(config, modality=modality), data, val, synthetic, out, ratios=shares, log=console.print,
          hardware=hardware)


def _ratios(text: str) -> List[float]:
    try:
        shares = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        shares = []
    if not shares or any(not 0 < r < 1 for r in shares):
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of shares in (0, 1), e.g. 0.1,0.3",
                                 param_hint="--ratios")
    return shares


def _frame_counts(text: str) -> List[int]:
    try:
        counts = [int(f) for f in text.split(",") if f.strip()]
    except ValueError:
        counts = []
    if not counts or any(n < 1 or n > 1000 for n in counts):
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of frame counts (1-1000), e.g. 5,75",
                                 param_hint="--frames")
    return counts


def synth_group(out: Path = typer.Argument(..., help="Output folder (clips/ + labels.txt)."),
                count: int = typer.Option(60, "--count", min=1, max=1_000_000, help="Number of clips."),
                balance: str = typer.Option("equal", "--balance", help="equal | paper | p,n,n shares."),
                faces: Optional[Path] = typer.Option(None, "--faces", help="Expression-labelled face folder (FER2013 layout)."),
                backgrounds: Optional[Path] = typer.Option(None, "--backgrounds", help="Folder of background images."),
                audio: Optional[Path] = typer.Option(None, "--audio", help="Class folders or a VGAF folder of audio."),
                cues: str = choice_option("full", "--cues", choices=("full", "split"),
                                          help="full | split (faces: Positive vs rest; sound: Negative vs rest)."),
                size: int = typer.Option(224, "--size", min=32, max=4096, help="Frame width and height."),
                fps: int = typer.Option(15, "--fps", min=1, max=240),
                seconds: float = real_option(5.0, "--seconds", min=0, max=3600, min_open=True),
                seed: int = typer.Option(0, "--seed"),
                backend: str = BACKEND_OPTION, address: Optional[str] = ADDRESS_OPTION,
                workers: Optional[int] = WORKERS_OPTION):
    """Synthetic group-emotion videos (§4.3) as mp4 + AAC with a VGAF label file (resumable)."""
    from affectlens.group.synth import (
        PAPER_BALANCE,
        SynthSpec,
        generate_dataset,
        load_sources,
    )

    shares = {"equal": (1, 1, 1), "paper": PAPER_BALANCE}.get(balance) or _shares(balance)
    check_output(out, kind="dir", inputs=[p for p in (faces, backgrounds, audio) if p is not None])
    spec = SynthSpec(width=size, height=size, fps=fps, seconds=seconds, cues=cues)
    sources = load_sources(faces, backgrounds, audio)
    r = generate_dataset(out, count, spec, shares, sources, seed, backend=backend, address=address, num_workers=workers)
    console.print(f"{r['clips']} clips in {out} ({r['class_counts']}); largest hidden share of a face "
                  f"{r['max_occlusion_written_now']:.3f}")
    _finish(r["failed"], "clips")


def _shares(text: str) -> tuple:
    import math

    try:
        shares = tuple(float(x) for x in text.split(","))
    except ValueError:
        shares = ()
    if len(shares) != 3 or not all(math.isfinite(x) and x >= 0 for x in shares) or sum(shares) <= 0:
        raise typer.BadParameter(f"{text!r} is not equal, paper or three shares p,n,n >= 0 (e.g. 0.3,0.35,0.35)",
                                 param_hint="--balance")
    return shares


synth_commands = {"group": synth_group}
