"""``affectlens videotag …`` and ``affectlens synth videotext|yt8m-frames``: thin calls into the recipes."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from affectlens.cli_options import REPORT_OPTION, choice_option, hardware_options, real_option
from affectlens.report.console import one_line, problem_lines, stdout
from affectlens.scale import check_output
from affectlens.training.hardware import Hardware

app = typer.Typer(help="Multi-label video tagging on YouTube-8M features (+ titles and keywords).",
                  no_args_is_help=True)

_DATA = typer.Option(..., "--data", help="Shards: .tfrecord files, folders or globs (repeat --data for more).")
_TRAIN_SHARDS = typer.Option(24, "--train-shards", min=0,
                             help="Without --val: the first N sorted shards train, the rest validate.")
_SPLIT_HELP = ("train, eval or all of the --data shards, split at --train-shards (default: eval of one folder, "
               "all of files and globs)")
SPLITS = ("train", "eval", "all")


def _split(data: List[Path], split: Optional[str], train_shards: int) -> List[Path]:
    """The shards of ``split``: all of ``data`` expanded, cut after ``train_shards``. Without a
    split: ``eval`` of one folder (the room's older protocol), every shard of files and globs."""
    from affectlens.errors import DataError
    from affectlens.videotag.data import expand_shards

    paths = expand_shards(data)
    if split is None:
        split = "eval" if len(data) == 1 and Path(data[0]).is_dir() else "all"
    tr, ev = paths[:train_shards], paths[train_shards:]
    chosen = {"train": tr, "eval": ev, "all": paths}[split]
    if not chosen:
        raise DataError(data[0], f"the {split} split is empty (only {len(paths)} shards)")
    return chosen


def _print_metrics(title: str, rows: dict) -> None:
    from rich.table import Table

    table = Table("model", "GAP", "Hit@1", "PERR", "mAP", title=one_line(title))
    for name, m in rows.items():
        table.add_row(one_line(name), *(f"{100 * m[k]:.2f}" for k in ("gap", "hit_at_one", "perr", "map")))
    stdout.print(table)


@app.command()
@hardware_options
def train(data: List[Path] = _DATA,
          out: Path = typer.Option(..., "--out", help="Run folder (best.pt, last.pt, metrics.csv)."),
          val: Optional[List[Path]] = typer.Option(None, "--val", help="Validation shards that choose best.pt "
                                                   "(files, folders, globs; repeatable). Without it: --train-shards."),
          test: Optional[List[Path]] = typer.Option(None, "--test", help="Shards to report best.pt on once."),
          config: Optional[Path] = typer.Option(None, "--config", help="A configs/videotag_*.yaml recipe."),
          epochs: Optional[int] = typer.Option(None, "--epochs", min=1), lr: Optional[float] = typer.Option(None, "--lr"),
          modalities: Optional[str] = typer.Option(None, "--modalities", help="e.g. rgb,audio"),
          release: Optional[str] = choice_option(None, "--release", choices=("2018", "2017"),
                                                 help="YouTube-8M release: 2018 (3,862 classes) or 2017 (4,716)."),
          num_workers: Optional[int] = typer.Option(None, "--num-workers", min=0, max=64,
                                                    help="Shard readers per process (DataLoader workers)."),
          shard_cache: Optional[bool] = typer.Option(None, "--shard-cache/--no-shard-cache",
                                                     help="Video level: keep decoded shards in the user cache, so "
                                                          "epochs after the first skip parsing (as much disk as the shards)."),
          train_shards: int = _TRAIN_SHARDS,
          resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from OUT/last.pt."),
          hardware: Hardware = None):
    """Train on shards streamed from disk (resumes from OUT/last.pt), choose best.pt by GAP on the
    validation shards and evaluate it there (and once on --test). Runs on the training engine
    (docs/training.md): with --devices N every process reads its own shards."""
    from affectlens.videotag import recipe
    from affectlens.videotag.data import expand_shards

    mods = modalities.split(",") if modalities else None
    cfg = recipe.load_config(config, epochs=epochs, lr=lr, modalities=mods, release=release, num_workers=num_workers,
                             shard_cache=shard_cache)
    if val:
        tr, va = expand_shards(data), expand_shards(val)
    else:
        tr = _split(data, "train", train_shards)
        everything = _split(data, "all", train_shards)
        va = everything[len(tr):] or None
    result = recipe.train(cfg, tr, out, va, hardware=hardware, resume=resume,
                          test_paths=expand_shards(test) if test else None)
    rows = {f"{cfg.model['kind']} — validation ({result['val']['videos']} videos, chose best.pt)": result["val"]
            } if "val" in result else {}
    if "test" in result:
        rows[f"{cfg.model['kind']} — test ({result['test']['videos']} videos)"] = result["test"]
    if rows:
        _print_metrics(f"best.pt = epoch {result['best_epoch']} of {result['epochs']}, "
                       f"{result['train_videos']} training videos, {result['train_seconds']:.0f} s", rows)


@app.command("eval")
def eval_cmd(checkpoint: Path = typer.Argument(..., help="best.pt (or last.pt) from 'videotag train'."),
             data: List[Path] = _DATA,
             split: Optional[str] = choice_option(None, "--split", choices=SPLITS, help=_SPLIT_HELP),
             train_shards: int = _TRAIN_SHARDS, report: Path | None = REPORT_OPTION,
             per_class: Optional[Path] = typer.Option(None, "--per-class", help="Write each class's AP to this CSV.")):
    """Print GAP / Hit@1 / PERR / mAP of a trained model (any unreadable shard is an error: no metrics
    from part of a split)."""
    from affectlens.videotag import recipe

    shards = _split(data, split, train_shards)
    for path in (report, per_class):
        if path is not None:
            check_output(path, inputs=[checkpoint, *shards])
    m = recipe.evaluate(checkpoint, shards, per_class=per_class, pr_classes=20 if report is not None else 0)
    curves = m.pop("pr_curves", {})
    _print_metrics(f"{checkpoint} on {m['videos']} videos", {checkpoint.parent.name or "model": m})
    if per_class is not None:
        stdout.print(f"per-class AP -> {one_line(per_class)}")
    if report is not None:
        from affectlens.report.html import write_eval_report
        from affectlens.training import load_checkpoint

        from affectlens.report.plots import pr_curves_png

        history = load_checkpoint(checkpoint).get("history") or None
        png = report.with_name(report.stem + "_pr.png")
        pr_curves_png({f"{c} ({v['positives']}, AP {v['ap']:.2f})": (v["precision"], v["recall"])
                       for c, v in curves.items()}, png,
                      title=f"Precision-recall of the {len(curves)} most frequent classes (top-20 predictions)")
        write_eval_report(report, m, history=history, title="videotag — evaluation",
                          notes=f"checkpoint `{checkpoint}` on {len(shards)} shards "
                                f"({m['videos']} videos); metrics as the YouTube-8M starter code defines them "
                                "(GAP over the top 20)",
                          tables={"Most frequent classes": [{"class": c, "positives": v["positives"], "AP": v["ap"]}
                                                            for c, v in curves.items()]},
                          images=[(png, "precision-recall per class (legend: class, positives, AP)")])
        stdout.print(f"report -> {one_line(report)}")


@app.command()
def predict(checkpoint: Path = typer.Argument(...), data: List[Path] = _DATA,
            out: Path = typer.Option(Path("predictions.csv"), "--out"),
            split: Optional[str] = choice_option(None, "--split", choices=SPLITS, help=_SPLIT_HELP),
            train_shards: int = _TRAIN_SHARDS,
            top_k: int = typer.Option(20, "--top-k", min=1, max=4716),
            vocabulary: Optional[Path] = typer.Option(None, "--vocabulary",
                                                      help="vocabulary.csv: add a Labels column with class names.")):
    """Write the starter code's submission CSV (VideoId,LabelConfidencePairs; top 20), streamed.

    A shard that cannot be read is reported (one line naming it) and the others are still
    predicted; the exit code is then 1."""
    from affectlens.videotag import recipe

    shards = _split(data, split, train_shards)
    check_output(out, inputs=[checkpoint, *shards, *([vocabulary] if vocabulary else [])])
    path, videos, failed = recipe.predict(checkpoint, shards, out, top_k, vocabulary)
    problem_lines(failed, "shard(s)")
    stdout.print(f"wrote {one_line(path)} ({videos} videos from {len(shards) - len(failed)} of {len(shards)} shards)")
    if failed:
        raise typer.Exit(1)


@app.command()
@hardware_options
def ablation(data: List[Path] = _DATA, text: Path = typer.Option(..., "--text", help="Video text (JSON lines)."),
             out: Path = typer.Option(..., "--out"),
             vocabulary: Optional[Path] = typer.Option(None, "--vocabulary", help="vocabulary(.partial).csv"),
             word2vec: Optional[Path] = typer.Option(None, "--word2vec", help="word2vec file; default: train on corpus"),
             epochs: int = typer.Option(4, "--epochs", min=1, max=10_000),
             filter_labels: bool = typer.Option(False, "--filter-labels"),
             experts: int = typer.Option(2, "--experts", min=1, max=1024),
             min_class_count: int = typer.Option(3, "--min-class-count", min=1,
                                                 help="Model classes with ≥ this many training videos."),
             text_size: str = choice_option("small", "--text-size", choices=("paper", "small"),
                                            help="TextCNN size: paper (widths 1..8 × 512, 4096 hidden) or small (CPU)."),
             vector_dim: int = typer.Option(100, "--vector-dim", min=2, max=4096,
                                            help="Width of word vectors trained on the corpus (the paper's word2vec: 300)."),
             train_shards: int = _TRAIN_SHARDS, hardware: Hardware = None):
    """Table 5 (visual; audio; visual+audio; +keywords; +titles) and Table 6 (text models).

    Every model that learns trains on the training engine (docs/training.md)."""
    from affectlens.videotag.ablation import run_ablation

    tr, ev = _split(data, "train", train_shards), _split(data, "eval", train_shards)
    check_output(out, kind="dir", inputs=[text, *tr, *ev])
    res = run_ablation(tr, ev, text, out,
                       vocabulary=vocabulary, word2vec=word2vec, epochs=epochs, filter_labels=filter_labels,
                       num_experts=experts, min_class_count=min_class_count, text_size=text_size,
                       vector_dim=vector_dim, hardware=hardware)
    tag = " (SYNTHETIC text)" if res["synthetic_text"] else ""
    _print_metrics("Table 5" + tag, res["table5"])
    _print_metrics("Table 6" + tag, res["table6"])


@app.command()
def ensemble(checkpoints: List[Path] = typer.Argument(..., help="best.pt files of video- and frame-level models."),
             data: List[Path] = _DATA, out: Path = typer.Option(..., "--out"),
             frame_data: Optional[List[Path]] = typer.Option(None, "--frame-data",
                                                             help="Frame-level shards of the same videos (for DBoF/LSTM)."),
             split: Optional[str] = choice_option(None, "--split", choices=SPLITS, help=_SPLIT_HELP),
             trees: int = typer.Option(1000, "--trees", min=1, max=100_000), train_shards: int = _TRAIN_SHARDS):
    """Table 4's ensembling (mean, max, random forest) of trained models on the evaluation videos."""
    from affectlens.videotag.data import expand_shards
    from affectlens.videotag.recipe import run_ensemble

    ev = _split(data, split, train_shards)
    frames = expand_shards(frame_data) if frame_data else None
    check_output(out, kind="dir", inputs=[*checkpoints, *ev, *(frames or [])])
    _print_metrics("Table 4 (ensembles)", run_ensemble(checkpoints, ev, out, trees, frame_paths=frames))


@app.command()
def demo(out: Path = typer.Argument(Path("videotag-demo"))):
    """Train and evaluate small models on synthetic features (well under a minute)."""
    from affectlens.videotag.demo import demo_run

    check_output(out, kind="dir")

    _print_metrics("videotag demo (SYNTHETIC features)", demo_run(out)["results"])


def videotext(shards: List[Path] = typer.Argument(..., help="Real video-level shards (files or folders)."),
              out: Path = typer.Argument(..., help="Output JSON lines."),
              vocabulary: Optional[Path] = typer.Option(None, "--vocabulary"),
              leak: float = real_option(0.3, "--leak", min=0, max=1,
                                        help="Share of labels whose own name appears in the text."),
              coverage: float = real_option(0.67, "--coverage", min=0, max=1, help="Share of videos with any text."),
              seed: int = typer.Option(0, "--seed", min=0)):
    """Synthetic YouTube-8M-Text: titles and keywords keyed by the real shards' video ids."""
    from affectlens.videotag.data import shard_paths
    from affectlens.videotag.synth import synth_videotext

    paths = [p for s in shards for p in shard_paths(s)]
    check_output(out, inputs=[*paths, *([vocabulary] if vocabulary else [])])
    stdout.print(f"wrote {one_line(synth_videotext(paths, out, vocabulary, leak, coverage, seed))} (synthetic)")


def yt8m_frames(shards: List[Path] = typer.Argument(...), out: Path = typer.Argument(..., help="Output folder."),
                frames: int = typer.Option(30, "--frames", min=1, max=300), seed: int = typer.Option(0, "--seed", min=0),
                max_videos: Optional[int] = typer.Option(None, "--max-videos", min=1)):
    """Synthetic frame-level SequenceExample shards around the real video-level features."""
    from affectlens.videotag.data import shard_paths
    from affectlens.videotag.synth import synth_frame_level

    paths = [p for s in shards for p in shard_paths(s)]
    check_output(out, kind="dir", inputs=paths)
    written = synth_frame_level(paths, out, frames, seed, max_videos)
    stdout.print(f"wrote {len(written)} synthetic frame-level shards to {one_line(out)}")


synth_commands = {"videotext": videotext, "yt8m-frames": yt8m_frames}
