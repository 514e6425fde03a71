"""``affectlens videotag …`` and ``affectlens synth videotext|yt8m-frames``: thin calls into the recipes."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from affectlens.report.html import REPORT_OPTION
from affectlens.training.options import (
    DEVICES_OPTION,
    NUM_NODES_OPTION,
    STRATEGY_OPTION,
)

app = typer.Typer(help="Multi-label video tagging on YouTube-8M features (+ titles and keywords).",
                  no_args_is_help=True)

_DATA = typer.Option(..., "--data", help="Folder of .tfrecord shards (sorted; the first --train-shards train).")
_TRAIN_SHARDS = typer.Option(24, "--train-shards", help="How many sorted shards form the training split.")


def _split(data: Path, split: str, train_shards: int):
    from affectlens.errors import DataError
    from affectlens.videotag.data import yt8m_split

    tr, ev = yt8m_split(data, train_shards)
    chosen = {"train": tr, "eval": ev, "all": tr + ev}.get(split)
    if chosen is None:
        raise DataError(data, f"unknown split {split!r} (train, eval or all)")
    if not chosen:
        raise DataError(data, f"the {split} split is empty (only {len(tr) + len(ev)} shards)")
    return chosen


def _print_metrics(title: str, rows: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("model", "GAP", "Hit@1", "PERR", "mAP", title=title)
    for name, m in rows.items():
        table.add_row(name, *(f"{100 * m[k]:.2f}" for k in ("gap", "hit_at_one", "perr", "map")))
    Console().print(table)


@app.command()
def train(data: Path = _DATA, out: Path = typer.Option(..., "--out", help="Run folder (model.pt, metrics.json)."),
          config: Optional[Path] = typer.Option(None, "--config", help="A configs/videotag_*.yaml recipe."),
          epochs: Optional[int] = typer.Option(None, "--epochs"), lr: Optional[float] = typer.Option(None, "--lr"),
          modalities: Optional[str] = typer.Option(None, "--modalities", help="e.g. rgb,audio"),
          train_shards: int = _TRAIN_SHARDS,
          devices: str = DEVICES_OPTION, num_nodes: int = NUM_NODES_OPTION, strategy: str = STRATEGY_OPTION):
    """Train on the training shards (resumes from OUT/last.pt) and evaluate on the rest.

    Single process only (its own loop over in-memory features): --devices, --num-nodes and
    --strategy must stay 1 / 1 / auto; any other value is refused with one line.
    """
    from affectlens.training.options import require_single_process
    from affectlens.videotag import recipe

    require_single_process("videotag train", devices, num_nodes, strategy)

    mods = modalities.split(",") if modalities else None
    cfg = recipe.load_config(config, epochs=epochs, lr=lr, modalities=mods)
    tr = _split(data, "train", train_shards)
    ev = _split(data, "eval", train_shards) if len(tr) < len(_split(data, "all", train_shards)) else None
    metrics = recipe.train(cfg, tr, out, ev)
    if metrics:
        _print_metrics(f"{cfg.model['kind']} on {metrics['videos']} held-out videos", {cfg.model["kind"]: metrics})


@app.command("eval")
def eval_cmd(checkpoint: Path = typer.Argument(..., help="model.pt from 'videotag train'."), data: Path = _DATA,
             split: str = typer.Option("eval", "--split", help="train, eval or all"), train_shards: int = _TRAIN_SHARDS,
             report: Path | None = REPORT_OPTION):
    """Print GAP / Hit@1 / PERR / mAP of a trained model."""
    from affectlens.videotag import recipe

    m = recipe.evaluate(checkpoint, _split(data, split, train_shards))
    _print_metrics(f"{checkpoint} on {m['videos']} videos", {checkpoint.parent.name or "model": m})
    if report is not None:
        from affectlens.report.html import write_eval_report
        from affectlens.training import load_checkpoint

        history = load_checkpoint(checkpoint).get("history") or None
        write_eval_report(report, m, history=history, title="videotag — evaluation",
                          notes=f"checkpoint `{checkpoint}` on the {split} split of `{data}` ({m['videos']} videos); "
                                "metrics as the YouTube-8M starter code defines them (GAP over the top 20)")
        typer.echo(f"report -> {report}")


@app.command()
def predict(checkpoint: Path = typer.Argument(...), data: Path = _DATA,
            out: Path = typer.Option(Path("predictions.csv"), "--out"),
            split: str = typer.Option("eval", "--split"), train_shards: int = _TRAIN_SHARDS,
            top_k: int = typer.Option(20, "--top-k")):
    """Write the Kaggle predictions.csv (VideoId,LabelConfidencePairs; top 20)."""
    from affectlens.videotag import recipe

    path = recipe.predict(checkpoint, _split(data, split, train_shards), out, top_k)
    typer.echo(f"wrote {path}")


@app.command()
def ablation(data: Path = _DATA, text: Path = typer.Option(..., "--text", help="Video text (JSON lines)."),
             out: Path = typer.Option(..., "--out"),
             vocabulary: Optional[Path] = typer.Option(None, "--vocabulary", help="vocabulary(.partial).csv"),
             word2vec: Optional[Path] = typer.Option(None, "--word2vec", help="word2vec file; default: train on corpus"),
             epochs: int = typer.Option(4, "--epochs"), filter_labels: bool = typer.Option(False, "--filter-labels"),
             experts: int = typer.Option(2, "--experts"),
             min_class_count: int = typer.Option(3, "--min-class-count", help="Model classes with ≥ this many training videos."),
             train_shards: int = _TRAIN_SHARDS):
    """Table 5 (visual; audio; visual+audio; +keywords; +titles) and Table 6 (text models)."""
    from affectlens.videotag.textrecipe import run_ablation

    res = run_ablation(_split(data, "train", train_shards), _split(data, "eval", train_shards), text, out,
                       vocabulary=vocabulary, word2vec=word2vec, epochs=epochs, filter_labels=filter_labels,
                       num_experts=experts, min_class_count=min_class_count)
    tag = " (SYNTHETIC text)" if res["synthetic_text"] else ""
    _print_metrics("Table 5" + tag, res["table5"])
    _print_metrics("Table 6" + tag, res["table6"])


@app.command()
def ensemble(checkpoints: List[Path] = typer.Argument(..., help="model.pt files of video-level models."),
             data: Path = _DATA, out: Path = typer.Option(..., "--out"),
             trees: int = typer.Option(1000, "--trees"), train_shards: int = _TRAIN_SHARDS):
    """Table 4's ensembling (mean, max, random forest) of trained models on the evaluation shards."""
    from affectlens.videotag.textrecipe import run_ensemble

    _print_metrics("Table 4 (ensembles)", run_ensemble(checkpoints, _split(data, "eval", train_shards), out, trees))


@app.command()
def demo(out: Path = typer.Argument(Path("videotag-demo"))):
    """Train and evaluate small models on synthetic features (well under a minute)."""
    from affectlens.videotag.recipe import demo_run

    _print_metrics("videotag demo (SYNTHETIC features)", demo_run(out)["results"])


def videotext(shards: List[Path] = typer.Argument(..., help="Real video-level shards (files or folders)."),
              out: Path = typer.Argument(..., help="Output JSON lines."),
              vocabulary: Optional[Path] = typer.Option(None, "--vocabulary"),
              leak: float = typer.Option(0.3, "--leak", help="Share of labels whose own name appears in the text."),
              coverage: float = typer.Option(0.67, "--coverage", help="Share of videos with any text."),
              seed: int = typer.Option(0, "--seed")):
    """Synthetic YouTube-8M-Text: titles and keywords keyed by the real shards' video ids."""
    from affectlens.videotag.data import shard_paths
    from affectlens.videotag.synth import synth_videotext

    paths = [p for s in shards for p in shard_paths(s)]
    typer.echo(f"wrote {synth_videotext(paths, out, vocabulary, leak, coverage, seed)} (synthetic)")


def yt8m_frames(shards: List[Path] = typer.Argument(...), out: Path = typer.Argument(..., help="Output folder."),
                frames: int = typer.Option(30, "--frames"), seed: int = typer.Option(0, "--seed"),
                max_videos: Optional[int] = typer.Option(None, "--max-videos")):
    """Synthetic frame-level SequenceExample shards around the real video-level features."""
    from affectlens.videotag.data import shard_paths
    from affectlens.videotag.synth import synth_frame_level

    paths = [p for s in shards for p in shard_paths(s)]
    written = synth_frame_level(paths, out, frames, seed, max_videos)
    typer.echo(f"wrote {len(written)} synthetic frame-level shards to {out}")


synth_commands = {"videotext": videotext, "yt8m-frames": yt8m_frames}
