"""Synthetic §4.3 generator: real mp4 + AAC in the VGAF layout, 3–9 moving faces, ≤ 10 % occlusion."""
from __future__ import annotations

import numpy as np
import pytest

from affectlens.group.data import read_vgaf
from affectlens.group.synth import (CUE_POOLS, SynthSpec, add_occluder, class_folders, generate_dataset, load_sources,
                                    plan_labels, procedural_sound, render_clip, render_face)
from tests.conftest import shared_path

SMALL = SynthSpec(width=64, height=64, fps=10, seconds=1.0)


def test_occlusion_never_exceeds_ten_percent_on_the_generators_masks():
    worst = 0.0
    for i in range(12):
        spec = SynthSpec(width=96, height=96, fps=5, seconds=1.0, occluder_prob=1.0)
        clip = render_clip(i % 3, spec, np.random.default_rng(i))
        assert 3 <= len(clip.face_classes) <= 9
        assert clip.occlusion.shape == (5, len(clip.face_classes))
        worst = max(worst, clip.occlusion.max())
    assert 0.0 < worst <= 0.10  # occluders are really drawn, and never hide more than 10 %


def test_occluder_share_is_exact():
    sprite = render_face(0, 40, np.random.default_rng(0))
    for seed in range(5):
        layer, share = add_occluder(sprite, 0.10, np.random.default_rng(seed))
        face = sprite[..., 3] > 127
        hidden = (face & (layer[..., 3] > 127)).sum() / face.sum()
        assert hidden == pytest.approx(share) and share <= 0.10


def test_faces_move_and_carry_the_class():
    clip = render_clip(2, SynthSpec(width=96, height=96, fps=10, seconds=1.0), np.random.default_rng(3))
    assert np.abs(clip.frames[0].astype(int) - clip.frames[-1].astype(int)).mean() > 0.5  # something moved
    assert set(clip.face_classes) == {2}
    split = render_clip(1, SynthSpec(width=96, height=96, fps=5, seconds=1.0, cues="split"), np.random.default_rng(4))
    assert set(split.face_classes) <= set(CUE_POOLS["split"][1][0]) and split.sound_class in (0, 1)


def test_procedural_faces_differ_by_class():
    """Same identity seed, different class: the mouth region differs (the class is visible)."""
    a = render_face(0, 64, np.random.default_rng(1)).astype(int)
    b = render_face(2, 64, np.random.default_rng(1)).astype(int)
    mouth = (slice(40, 60), slice(16, 48))
    assert np.abs(a[mouth] - b[mouth]).mean() > 5


def test_procedural_sound_is_class_dependent():
    import librosa

    cents = []
    for c in range(3):
        x = procedural_sound(c, 1.0, 16_000, np.random.default_rng(0))
        assert x.dtype == np.float32 and x.shape == (16_000,) and np.abs(x).max() <= 1
        cents.append(float(librosa.feature.spectral_centroid(y=x, sr=16_000).mean()))
    assert len({round(c, -1) for c in cents}) == 3


def test_plan_labels_balance_and_count():
    lab = plan_labels(100, (0.3016, 0.3471, 0.3513), seed=0)
    assert len(lab) == 100 and np.bincount(lab).tolist() == [30, 35, 35]
    assert np.bincount(plan_labels(7, (1, 1, 1), 0)).tolist() in ([3, 2, 2], [2, 3, 2], [2, 2, 3])


def test_generate_dataset_writes_vgaf_layout_and_resumes(tmp_path):
    from affectlens.media import load_audio, probe

    r = generate_dataset(tmp_path / "syn", 3, SMALL, seed=0, progress=False)
    assert r["clips"] == 3 and r["written_now"] == 3 and r["max_occlusion_written_now"] <= 0.10
    lines = (tmp_path / "syn" / "labels.txt").read_text().splitlines()
    assert lines[0] == "Vid_name Label" and len(lines) == 4
    index = read_vgaf(tmp_path / "syn")
    assert len(index.items) == 3 and not index.errors
    info = probe(index.items[0].path)
    assert info.audio is not None and info.frame_count == 10 and (info.width, info.height) == (64, 64)
    assert abs(len(load_audio(index.items[0].path)) - 16_000) < 400
    again = generate_dataset(tmp_path / "syn", 3, SMALL, seed=0, progress=False)
    assert again["written_now"] == 0 and again["clips"] == 3  # resumed: nothing rewritten


def test_fer_folder_faces_and_class_audio(tmp_path):
    fer = shared_path("fer2013")
    faces = class_folders(fer, {".jpg", ".png"})
    assert set(faces) == {0, 1, 2} and all("train" in str(p) for p in faces[0][:5])  # surprise dropped, train only
    from affectlens.media import write_video

    audio_dir = tmp_path / "audio" / "Negative"
    audio_dir.mkdir(parents=True)
    write_video(audio_dir / "a.mp4", np.zeros((5, 16, 16, 3), np.uint8), 5,
                audio=procedural_sound(2, 1.0, 16_000, np.random.default_rng(0)))
    sources = load_sources(faces=fer, audio=tmp_path / "audio")
    assert list(sources.audio) == [2]
    clip = render_clip(2, SMALL, np.random.default_rng(0), sources)
    assert clip.frames.shape == (10, 64, 64, 3) and clip.audio.shape == (16_000,)
