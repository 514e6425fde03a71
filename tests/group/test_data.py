"""VGAF reader (bad rows with line numbers), feature cache (shapes, atomic, resumable), Dataset."""
from __future__ import annotations

import numpy as np
import pytest

from affectlens.errors import DataError
from affectlens.group.data import FeatureSpec, GroupClips, extract_features, read_vgaf
from affectlens.group.synth import SynthSpec, generate_dataset


@pytest.fixture(scope="module")
def vgaf(tmp_path_factory):
    root = tmp_path_factory.mktemp("vgaf")
    generate_dataset(root, 3, SynthSpec(width=64, height=64, fps=10, seconds=2.0), seed=0, progress=False)
    return root


def test_bad_rows_are_reported_with_line_numbers(vgaf, tmp_path):
    rows = (vgaf / "labels.txt").read_text().splitlines()
    bad = tmp_path / "Val_labels.txt"
    bad.write_text("\n".join(rows[:2] + ["nope.mp4 1", f"{rows[2].split()[0]} 4", "only_one_field"] + rows[2:]) + "\n")
    index = read_vgaf(bad, clips=vgaf / "clips")
    assert len(index.items) == 3
    assert len(index.errors) == 3
    assert index.errors[0].startswith(f"{bad}:3:") and "not found" in index.errors[0]
    assert ":4:" in index.errors[1] and "unknown label '4'" in index.errors[1]
    assert ":5:" in index.errors[2]
    with pytest.raises(DataError, match=":3:"):
        read_vgaf(bad, clips=vgaf / "clips", on_error="error")


def test_names_without_extension_resolve(vgaf, tmp_path):
    lab = tmp_path / "labels.txt"
    lab.write_text("Vid_name Label\nsynt_00000 2\n")
    index = read_vgaf(lab, clips=vgaf / "clips")
    assert index.items[0].path.name == "synt_00000.mp4" and index.items[0].label == 1


def test_missing_folder_or_label_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_vgaf(tmp_path / "absent")
    with pytest.raises(DataError, match="no label file"):
        read_vgaf(tmp_path)


def test_feature_cache_shapes_resume_and_bad_clip(vgaf, tmp_path):
    index = read_vgaf(vgaf)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    items = index.items + [type(index.items[0])("broken.mp4", broken, 0, 9)]
    spec = FeatureSpec(n_video=5, n_audio=5, size=32)
    r = extract_features(items, tmp_path / "cache", spec, progress=False)
    assert r["written"] == 3 and len(r["failed"]) == 1 and "broken.mp4" in r["failed"][0]
    again = extract_features(items, tmp_path / "cache", spec, progress=False)
    assert again["written"] == 0 and again["skipped_existing"] == 3
    ds = GroupClips(items, tmp_path / "cache", spec)
    assert len(ds) == 3 and len(ds.missing) == 1
    s = ds[0]
    assert s["video"].shape == (5, 3, 32, 32) and s["video"].dtype.is_floating_point and float(s["video"].max()) <= 1
    assert s["audio"].shape == (5, 1, 128, 251) and s["label"] == index.items[0].label and s["id"] == "synt_00000.mp4"
    assert not list((tmp_path / "cache").rglob(".*"))  # no temp files left behind


def test_75_frames_align_with_the_contract(vgaf, tmp_path):
    from affectlens.group.data import clip_features
    from affectlens.media import audio_windows, frame_times, load_audio, log_mel

    item = read_vgaf(vgaf).items[1]
    f = clip_features(item.path, FeatureSpec(n_video=75, n_audio=5, size=16))
    assert f["video"].shape == (75, 3, 16, 16) and f["audio"].shape == (5, 1, 128, 251)
    a = load_audio(item.path)
    ref = log_mel(audio_windows(a, frame_times(2.0, 5)))
    # audio frame i = the 1-s window centred on t_i = (i + .5)·D/5, kept as float16 (0.03 dB steps at -80 dB)
    assert f["audio"].dtype == np.float16 and np.allclose(f["audio"], ref, rtol=0, atol=0.07)


def test_training_and_prediction_feed_the_model_identical_tensors(vgaf, tmp_path):
    """One clip → tensors path: the cache entry a training clip becomes and what ``predict_video``
    hands the model for the same clip are the same arrays, bit for bit."""
    import torch

    from affectlens.group.data import clip_features, to_model_inputs
    from affectlens.group.model import group_tiny
    from affectlens.group.recipe import predict_video

    clip = vgaf / "clips" / "synt_00000.mp4"
    cfg = group_tiny(n_video=6, n_audio=3)
    seen = {}

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cfg = cfg

        def forward(self, video, audio):
            seen["video"], seen["audio"] = video, audio
            return torch.zeros(len(video), 3)

    predict_video(Recorder(), clip)
    spec = FeatureSpec(n_video=cfg.n_video, n_audio=cfg.n_audio, size=cfg.img_size)
    cached = extract_features(read_vgaf(vgaf).items[:1], tmp_path / "cache", spec, progress=False)
    entry = next((tmp_path / "cache").rglob("*.npz"))
    with np.load(entry) as z:
        video, audio = to_model_inputs(z["video"], z["audio"])
    assert cached["written"] == 1 and seen["video"].shape == (1, 6, 3, cfg.img_size, cfg.img_size)
    assert torch.equal(seen["video"][0], video) and torch.equal(seen["audio"][0], audio)
    direct = clip_features(clip, spec)
    assert np.array_equal(direct["video"], z_video(entry)) and direct["audio"].dtype == np.float16


def z_video(entry):
    with np.load(entry) as z:
        return z["video"]
