"""Raw frames → detector → eye-line alignment → 44 × 44: on a real photo and on a rendered face."""
import cv2
import numpy as np
import pytest

from affectlens.errors import MediaError
from affectlens.media.image import read_image as read_rgb
from affectlens.spontaneity.data import detect_and_align, read_manifest
from affectlens.spontaneity.data import preprocess_manifest
from affectlens.spontaneity.synth import Action, render_face, render_scene, sample_identity
from tests.conftest import shared_path


def _eye_rows(crop):
    """Row of the darkest band in the upper part (brows and eyes) of a crop."""
    band = crop[8:24].astype(float).mean(1)
    return 8 + int(np.argmin(band))


def test_real_photo_is_aligned(tmp_path):
    photo = shared_path("media", "images", "single_face.jpg")
    rgb = read_rgb(photo)
    crop = detect_and_align(rgb)
    assert crop.shape == (44, 44) and crop.dtype == np.uint8
    # a tilted copy of the same photo gives (nearly) the same crop: the eye line is levelled
    h, w = rgb.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), 15, 1.0)
    tilted = cv2.warpAffine(rgb, rot, (w, h), borderMode=cv2.BORDER_REPLICATE)
    crop2 = detect_and_align(tilted)
    corr = np.corrcoef(crop.ravel().astype(float), crop2.ravel().astype(float))[0, 1]
    assert corr > 0.85
    # and the batch path: one good pair, one missing file → reported, the good one written
    cv2.imwrite(str(tmp_path / "tilted.jpg"), cv2.cvtColor(tilted, cv2.COLOR_RGB2BGR))
    m = tmp_path / "raw.csv"
    m.write_text(f"subject,onset,apex,label\nS1,{photo},tilted.jpg,posed\nS2,{photo},missing.jpg,spontaneous\n")
    out_manifest, res = preprocess_manifest(m, tmp_path / "pre", progress=False)
    assert len(res.failed) == 1 and "missing.jpg" in res.failed[0][1] and len(res.done) == 1
    again = preprocess_manifest(m, tmp_path / "pre", progress=False)[1]  # resume: the good pair is skipped
    assert len(again.skipped) == 1 and not again.done and len(again.failed) == 1
    rows = read_manifest(out_manifest)
    assert len(rows) == 1 and cv2.imread(str(rows[0].apex), 0).shape == (44, 44)


def test_rendered_face_goes_through_the_detector():
    rng = np.random.default_rng(1)
    for _ in range(6):  # the cartoon face is not always found by CenterFace; try a few identities
        idn = sample_identity(rng)
        scene = render_scene(idn, Action(), 320, rng=rng)
        try:
            crop = detect_and_align(scene)
        except MediaError:
            continue
        direct = render_face(idn, Action(), 44, noise=0)
        corr = np.corrcoef(crop.ravel().astype(float), direct.ravel().astype(float))[0, 1]
        # CenterFace places a cartoon's eye points ~10 % closer together than drawn, so the crop is
        # slightly zoomed out; the brow/eye line still lands on the row of the canonical render
        # (whose eyes sit at EYE_Y by construction)
        assert corr > 0.5
        assert abs(_eye_rows(crop) - _eye_rows(direct)) <= 1.5
        return
    pytest.skip("CenterFace found none of the six rendered faces")


def test_no_face_is_a_clear_error():
    with pytest.raises(MediaError, match="no face detected"):
        detect_and_align(np.full((160, 160, 3), 90, np.uint8), name="blank.png")
