"""Streaming shards (ShardStream): every video once per epoch, shards dealt to workers and DDP ranks,
a bounded shuffle buffer, both releases, and `videotag train --devices 2 --strategy ddp` on gloo."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from affectlens.errors import DataError
from affectlens.metrics.multilabel import all_metrics
from affectlens.training import load_checkpoint
from affectlens.videotag import data as D
from affectlens.videotag.synth import synth_video_level

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return synth_video_level(tmp_path_factory.mktemp("stream"), num_shards=6, videos_per_shard=25, num_classes=8,
                             noise=0.8)


def _ids(stream, workers: int = 0) -> list[str]:
    return [i for b in DataLoader(stream, batch_size=None, num_workers=workers) for i in b["ids"]]


def test_every_video_once_per_epoch_in_a_new_order_with_workers(shards):
    everything = D.read_video_level(shards)
    stream = D.ShardStream(shards, batch_size=16, shuffle=True, buffer=40, seed=3)
    assert stream.videos == len(everything) == 150
    first = _ids(stream, workers=2)
    assert sorted(first) == sorted(everything.ids)
    stream.set_epoch(1)
    second = _ids(stream, workers=2)
    assert sorted(second) == sorted(first) and second != first
    stream.set_epoch(0)
    assert _ids(stream, workers=2) == first  # the order is the epoch's: a resumed run reads what it would have


def test_batches_hold_the_features_and_labels_of_their_videos(shards):
    everything = D.read_video_level(shards)
    by_id = {v: i for i, v in enumerate(everything.ids)}
    y = everything.targets()
    for batch in DataLoader(D.ShardStream(shards, batch_size=32, modalities=("audio",)), batch_size=None):
        rows = [by_id[v] for v in batch["ids"]]
        assert torch.equal(batch["x"], torch.from_numpy(everything.audio[rows]))
        assert np.array_equal(batch["y"].numpy() > 0.5, y[rows])


def test_unshuffled_stream_is_the_files_in_order(shards):
    assert _ids(D.ShardStream(shards, batch_size=7)) == D.read_video_level(shards).ids


def test_ddp_ranks_read_disjoint_shards_and_take_equal_steps(shards, monkeypatch):
    stream = D.ShardStream(shards[:5], batch_size=8, shuffle=True, seed=1)
    seen, steps = [], []
    for rank in (0, 1):
        monkeypatch.setattr(D, "_rank_world", lambda rank=rank: (rank, 2))
        mine, limit = stream._slots()
        seen.append(set(mine))
        batches = list(DataLoader(stream, batch_size=None))
        steps.append(len(batches))
        assert limit == len(batches) and all(len(b["ids"]) == 8 for b in batches)
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(shards[:5])
    assert steps[0] == steps[1] == (2 * 25) // 8  # the rank with 2 shards sets the pace
    monkeypatch.setattr(D, "_rank_world", lambda: (0, 8))
    with pytest.raises(DataError, match="5 shards for 8 readers"):
        stream._slots()


def test_streamed_metrics_equal_the_whole_array_metrics(shards):
    from affectlens.metrics.multilabel import TopK

    rng = np.random.default_rng(0)
    everything = D.read_video_level(shards)
    y = everything.targets()
    scores = rng.random(y.shape).astype(np.float32) + y * rng.random(y.shape).astype(np.float32)
    whole = all_metrics(scores, y)
    parts = [TopK(y.shape[1]).add(scores[s:s + 40], y[s:s + 40]) for s in range(0, len(y), 40)]
    merged = parts[0]
    for p in parts[1:]:
        merged.merge(p)
    assert merged.result() == pytest.approx(whole, abs=1e-12)


def test_both_releases_and_labels_outside_the_vocabulary(tmp_path):
    rgb, audio = np.zeros((2, D.RGB_DIM), np.float32), np.zeros((2, D.AUDIO_DIM), np.float32)
    path = tmp_path / "train2017.tfrecord"
    with D.TFRecordWriter(path) as w:  # the 2017 layout: "video_id", labels up to 4,715
        for vid, lab in (("a1", [4715]), ("b2", [3, 7])):
            w.write(D.encode_example({"video_id": vid, "labels": np.array(lab, np.int64),
                                      "mean_rgb": rgb[0], "mean_audio": audio[0]}))
    batch = next(iter(DataLoader(D.ShardStream([path], num_classes=D.RELEASES["2017"]), batch_size=None)))
    assert batch["ids"] == ["a1", "b2"] and batch["y"].shape == (2, 4716) and batch["y"][0, 4715] == 1
    with pytest.raises(DataError, match=r"train2017.tfrecord: record at byte offset 0: label 4715 is outside "
                                        r"the 3862-class vocabulary"):
        list(DataLoader(D.ShardStream([path]), batch_size=None))


def test_expand_shards_takes_files_folders_and_globs(shards, tmp_path):
    folder = shards[0].parent
    assert D.expand_shards([folder]) == sorted(shards)
    assert D.expand_shards([str(folder / "*0.tfrecord"), shards[1], folder]) == \
        [p for p in sorted(shards) if p.name.endswith("0.tfrecord")] + [shards[1]] + \
        [p for p in sorted(shards) if not p.name.endswith("0.tfrecord") and p != shards[1]]
    with pytest.raises(DataError, match="no shard files match"):
        D.expand_shards([str(tmp_path / "nothing*.tfrecord")])


@pytest.mark.slow
def test_ddp_two_cpu_ranks_train_on_their_own_shards_and_write_one_checkpoint(shards, tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("model: moe\nnum_experts: 2\nepochs: 2\nbatch_size: 8\nthreads: 1\nnum_workers: 0\n")
    exe = Path(sys.executable).with_name("affectlens")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    data = [a for s in shards[:4] for a in ("--data", str(s))]  # repeated --data
    done = subprocess.run([str(exe), "videotag", "train", *data, "--val", str(shards[4]),
                           "--config", str(cfg), "--out", str(tmp_path / "run"),
                           "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"],
                          env=env, capture_output=True, text=True, timeout=300, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("validation (25 videos") == 1  # rank 0 alone evaluates
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["world_size"] == 2 and len(summary["history"]["val_gap"]) == 2
    assert sorted(p.name for p in (tmp_path / "run").glob("*.pt")) == ["best.pt", "last.pt"]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_one_gpu_epoch_streams_and_writes_one_checkpoint(shards, tmp_path):
    from affectlens.training.hardware import Hardware
    from affectlens.videotag import recipe

    cfg = recipe.TrainConfig(epochs=1, batch_size=32, num_workers=0, threads=1)
    res = recipe.train(cfg, shards[:4], tmp_path / "gpu", shards[4:], log=lambda s: None,
                       hardware=Hardware(accelerator="gpu"))
    assert res["epochs"] == 1 and load_checkpoint(tmp_path / "gpu" / "last.pt")["epoch"] == 1


def test_decoded_shard_cache_gives_the_same_batches_and_follows_changes(shards, tmp_path):
    """--shard-cache: the stream through decoded shards equals the parsed one, batch for batch; a
    second read loads the .npz without parsing; an edited shard is decoded again, and a label
    outside the vocabulary is still an error naming the shard."""
    import shutil

    cache = tmp_path / "cache"
    plain = list(DataLoader(D.ShardStream(shards, batch_size=16, shuffle=True, buffer=40, seed=3), batch_size=None))
    for _ in range(2):  # first decodes and writes the cache, second reads it
        cached = list(DataLoader(D.ShardStream(shards, batch_size=16, shuffle=True, buffer=40, seed=3, cache=cache),
                                 batch_size=None))
        assert [b["ids"] for b in cached] == [b["ids"] for b in plain]
        assert all(torch.equal(a["x"], b["x"]) and torch.equal(a["y"], b["y"]) for a, b in zip(cached, plain))
    assert len(list(cache.glob("*.npz"))) == len(shards)
    copy = tmp_path / "copy.tfrecord"
    shutil.copy(shards[0], copy)
    first = D.decoded_shard(copy, D.NUM_CLASSES, cache)
    shutil.copy(shards[1], copy)  # replaced: another size or time, another key
    os.utime(copy, ns=(1, 1))
    assert D.decoded_shard(copy, D.NUM_CLASSES, cache).ids == D.read_video_level([shards[1]]).ids != first.ids
    with pytest.raises(DataError, match="copy.tfrecord"):
        D.decoded_shard(copy, 2, cache)  # its labels are outside a 2-class vocabulary
