"""Stage 3 and the attacks: attribute flips never touch protected attributes, faces are replaced
only inside the landmark ellipse, obfuscate plugs into anonymize, dlib matches a person to himself."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from affectlens.errors import AffectlensError
from affectlens.privacy import attack as K
from affectlens.privacy import obfuscate as O
from affectlens.privacy import model as PM
from tests.conftest import shared_path

IDS = ("media", "identities")


def test_default_flip_is_the_papers_four():
    mask = O.flip_mask()
    assert {O.CELEBA_ATTRIBUTES[i] for i in np.flatnonzero(mask)} == {"Pointy_Nose", "Smiling", "Young", "Big_Nose"}
    assert O.flip_mask("smiling,YOUNG").sum() == 2


@pytest.mark.parametrize("name", O.PROTECTED)
def test_protected_attributes_cannot_be_flipped(name):
    with pytest.raises(O.ProtectedAttributeError):
        O.flip_mask([name, "Smiling"])


def test_unknown_attribute_is_an_error():
    with pytest.raises(AffectlensError, match="unknown attribute"):
        O.flip_mask(["Smiley"])


def test_manipulate_never_changes_protected_attributes():
    rng = np.random.default_rng(0)
    attrs = rng.integers(0, 2, (500, 40)).astype(np.uint8)
    prot = np.array([n in O.PROTECTED for n in O.CELEBA_ATTRIBUTES])
    for mask in (O.flip_mask(), O.flip_mask("all"), rng.integers(0, 2, 40).astype(np.uint8)):  # even a raw mask
        out = O.manipulate(attrs, mask)
        assert np.array_equal(out[:, prot], attrs[:, prot])
        free = ~prot & (mask == 1)
        assert (out[:, free] != attrs[:, free]).all() and np.array_equal(out[:, ~free], attrs[:, ~free])
    assert O.flip_mask("all").sum() == 40 - len(O.PROTECTED)


def test_match_scores_by_hand():
    gallery = np.array([[0.0, 0], [1, 0], [5, 5]])
    gids = np.array([1, 2, 3])
    probe = np.array([[0.1, 0], [0.55, 0], [9, 9]])
    pids = np.array([1, 1, 3])
    # probe 0: own 0.1 ✓, nearest = own ✓; probe 1: own 0.55 ✓ but nearest is id 2 (0.45) ✗; probe 2: 5.66 ✗
    m = K.match_scores(probe, pids, gallery, gids, threshold=0.6)
    assert m["verified"] == pytest.approx(2 / 3) and m["identified"] == pytest.approx(1 / 3) and m["n"] == 3
    assert np.allclose(K.face_distance(probe[:1], gallery[:2]), [[0.1, 0.9]])


def test_paper_recognizer_shapes_and_tiny_learning_through_the_engine(tmp_path):
    paper = PM.recognizer_paper()
    assert paper.head.out_features == 20 and paper.features[0].stride == (4, 4)  # AlexNet's 11×11/4 at 227
    assert len(paper.config.extra_dense) == 6  # the paper's 6 added dense layers
    small = PM.recognizer_small().eval()
    assert small(torch.zeros(2, 3, 128, 64)).shape == (2, 20)
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 6)
    images = np.zeros((24, 128, 64, 3), np.uint8)
    for i, k in enumerate(labels):  # identity k = a bright horizontal band (survives the random flips)
        images[i, k * 32:(k + 1) * 32] = 200 + rng.integers(0, 50)
    torch.set_num_threads(1)
    config = PM.recognizer_tiny(n_classes=4, dropout=0.0).config
    model, res = K.train_recognizer(config, images, labels, tmp_path, epochs=40, lr=3e-3, batch_size=8, progress=False)
    losses = res.history["train_loss"]
    assert losses[-1] < 0.5 * losses[0] and K.recognizer_accuracy(model, images, labels) > 0.9
    assert (tmp_path / "last.pt").is_file()


@pytest.mark.shared_data
def test_dlib_matches_a_person_to_himself_and_not_to_another():
    from affectlens.media.image import read_image

    o1 = K.encode_faces(read_image(shared_path(*IDS, "obama.jpg")), upsample=0)
    o2 = K.encode_faces(read_image(shared_path(*IDS, "obama2.jpg")), upsample=0)
    b = K.encode_faces(read_image(shared_path(*IDS, "biden.jpg")), upsample=0)
    assert o1.shape == o2.shape == b.shape == (1, 128)
    assert K.face_distance(o1, o1)[0, 0] < 1e-6
    assert K.face_distance(o1, o2)[0, 0] < K.MATCH_THRESHOLD < K.face_distance(o1, b)[0, 0]


def _tiny_obfuscator():
    from affectlens.faces.landmarks import N_LANDMARKS
    from affectlens.privacy.model import attributes_tiny, recon_tiny
    from tests.faces.test_landmarks import _synthetic_face

    torch.manual_seed(0)
    template = _synthetic_face(cx=44.5, cy=60.0, s=22.0)
    assert template.shape == (N_LANDMARKS, 2)
    recon = recon_tiny(template_points=tuple(template.ravel().tolist()))
    return O.Obfuscator(recon, attributes_tiny())


@pytest.mark.shared_data
def test_obfuscator_changes_only_the_face_ellipse_of_a_real_photo():
    from affectlens.faces.landmarks import ellipse_mask, landmarks
    from affectlens.media.image import read_image

    rgb = read_image(shared_path(*IDS, "obama-240p.jpg"))
    obf = _tiny_obfuscator()
    out, faces = obf(rgb)
    assert out.shape == rgb.shape and out.dtype == np.uint8 and len(faces) == 1
    pts = landmarks(rgb)[0]
    face = ellipse_mask(rgb.shape[:2], pts, margin=1.4).astype(bool)  # generous: warp + feather
    assert np.abs(out.astype(int) - rgb)[~face].max() <= 1  # the context is untouched
    assert np.abs(out.astype(int) - rgb)[face].mean() > 5  # the face is regenerated
    f = faces[0]
    prot = [O.CELEBA_ATTRIBUTES.index(n) for n in O.PROTECTED]
    assert np.array_equal(f.attrs_after[prot], f.attrs_before[prot])
    assert (f.attrs_after != f.attrs_before).sum() == 4
    obf.output = "generated"  # the paper's output: the whole aligned crop is the network's
    gen, _ = obf(rgb)
    changed = np.abs(gen.astype(int) - rgb).max(axis=2) > 1
    assert changed[face].mean() > 0.9 and changed[~face].sum() > changed[face].sum() * 0.2  # context rebuilt too
    with pytest.raises(AffectlensError, match="output 'both'"):
        O.Obfuscator(obf.recon, obf.attr_model, output="both")


@pytest.mark.shared_data
def test_obfuscate_is_an_anonymize_method(tmp_path):
    from affectlens.privacy import masking as A
    from affectlens.media.image import read_image

    rgb = read_image(shared_path(*IDS, "obama-240p.jpg"))
    method = O.as_anonymize_method(_tiny_obfuscator())
    A.register_method("obfuscate_test", method)
    from affectlens.faces.detect import CenterFace

    boxes = CenterFace(0.5, num_threads=1)(rgb).boxes
    assert len(boxes) == 1
    out = A.anonymize_frame(rgb, boxes, A.get_method("obfuscate_test"), "ellipse", 0.25)
    assert out.shape == rgb.shape and np.abs(out.astype(int) - rgb).mean() > 0.5
    # a region with no face at all falls back to blur, so a detection is never left unmasked
    flat = np.full((30, 30, 3), 90, np.uint8)
    assert method(flat, np.ones((30, 30), np.float32)).shape == flat.shape


def test_recognizer_sizes_are_named_configs_and_the_cli_takes_them():
    from affectlens.privacy.model import RECOGNIZER_SIZES, recognizer_config
    from tests.reliability.conftest import invoke

    paper = recognizer_config("paper", n_classes=20)
    assert paper.image_hw == (227, 227) and paper.dense == (4096, 4096) and len(paper.extra_dense) == 6
    assert set(RECOGNIZER_SIZES) == {"tiny", "small", "paper"} and recognizer_config("small").image_hw == (128, 64)
    with pytest.raises(ValueError, match="recognizer size"):
        recognizer_config("huge")
    r = invoke(["privacy", "evaluate", "--recognizer", "huge"])
    assert r.code == 2 and len(r.err_lines) == 1 and "--recognizer" in r.err_lines[0]


def test_evaluation_variants_include_the_papers_generated_output():
    """``privacy evaluate`` scores the paper's output (the whole regenerated crop) beside the blend."""
    from affectlens.privacy.evaluate import _variants
    from tests.faces.test_landmarks import _synthetic_face

    obf = _tiny_obfuscator()
    pts = _synthetic_face(cx=44.5, cy=60.0, s=22.0)[None].repeat(2, 0)
    crops = np.random.default_rng(0).integers(0, 255, (2, 109, 89, 3), dtype=np.uint8)
    out = _variants(obf, crops, pts, 1.08)
    assert {"obfuscate", "obfuscate (generated)", "blur", "pixelate"} <= set(out) and obf.output == "blended"
    from affectlens.faces.landmarks import ellipse_mask

    outside = ~ellipse_mask((109, 89), pts[0], 1.3).astype(bool)  # beyond the (feathered) face ellipse
    assert (out["obfuscate"][:, outside] == crops[:, outside]).all()           # the blend keeps the context
    assert (out["obfuscate (generated)"][:, outside] != crops[:, outside]).mean() > 0.5  # the paper's does not
