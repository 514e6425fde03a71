"""TFRecord framing, CRC32C, protobuf wire format (checked against the protobuf library), YT8M readers."""
from __future__ import annotations

import struct
import time

import numpy as np
import pytest

from affectlens.errors import DataError
from affectlens.videotag import data as D
from affectlens.videotag import tfrecord
from tests.conftest import shared_path


def _proto_classes():
    """tf.train.Example / SequenceExample built at runtime from their .proto description."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="affectlens_test_example.proto", package="altest", syntax="proto3")

    def msg(name, fields, parent=None):
        m = (parent.nested_type if parent is not None else fdp.message_type).add(name=name)
        for num, (fname, ftype, label, tname, oneof) in enumerate(fields, start=1):
            f = m.field.add(name=fname, number=num, type=ftype, label=label)
            if tname:
                f.type_name = tname
            if oneof is not None:
                f.oneof_index = oneof
        return m

    R, O = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    msg("BytesList", [("value", F.TYPE_BYTES, R, None, None)])
    msg("FloatList", [("value", F.TYPE_FLOAT, R, None, None)])
    msg("Int64List", [("value", F.TYPE_INT64, R, None, None)])
    feat = msg("Feature", [("bytes_list", F.TYPE_MESSAGE, O, ".altest.BytesList", 0),
                           ("float_list", F.TYPE_MESSAGE, O, ".altest.FloatList", 0),
                           ("int64_list", F.TYPE_MESSAGE, O, ".altest.Int64List", 0)])
    feat.oneof_decl.add(name="kind")
    for outer, entry, value in (("Features", "FeatureEntry", ".altest.Feature"),
                                ("FeatureLists", "FeatureListEntry", ".altest.FeatureList")):
        if outer == "FeatureLists":
            msg("FeatureList", [("feature", F.TYPE_MESSAGE, R, ".altest.Feature", None)])
        m = fdp.message_type.add(name=outer)
        e = msg(entry, [("key", F.TYPE_STRING, O, None, None), ("value", F.TYPE_MESSAGE, O, value, None)], m)
        e.options.map_entry = True
        m.field.add(name="feature" if outer == "Features" else "feature_list", number=1, type=F.TYPE_MESSAGE,
                    label=R, type_name=f".altest.{outer}.{entry}")
    msg("Example", [("features", F.TYPE_MESSAGE, O, ".altest.Features", None)])
    msg("SequenceExample", [("context", F.TYPE_MESSAGE, O, ".altest.Features", None),
                            ("feature_lists", F.TYPE_MESSAGE, O, ".altest.FeatureLists", None)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    get = lambda n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"altest.{n}"))
    return get("Example"), get("SequenceExample")


def test_crc32c_known_vectors():
    assert D.crc32c(b"") == 0
    assert D.crc32c(b"123456789") == 0xE3069283
    assert D.crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4
    assert D.crc32c(bytes(range(32))) == 0x46DD794E
    assert D.crc32c(b"\xff" * 32) == 0x62A8AB43


def test_crc32c_batch_matches_bytewise():
    rng = np.random.default_rng(0)
    msgs = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (0, 1, 3, 4, 5, 63, 64, 65, 1000, 4711)]
    got = D.crc32c_batch(msgs)
    for m, g in zip(msgs, got):
        assert int(g) == tfrecord._crc32c_small(m)


def test_example_encoding_agrees_with_protobuf():
    Example, _ = _proto_classes()
    rgb = np.arange(1024, dtype=np.float32) / 7
    data = D.encode_example({"id": "abcd", "labels": np.array([3, 300, 3861]), "mean_rgb": rgb})
    ex = Example.FromString(data)
    assert ex.features.feature["id"].bytes_list.value == [b"abcd"]
    assert list(ex.features.feature["labels"].int64_list.value) == [3, 300, 3861]
    assert np.array_equal(np.array(ex.features.feature["mean_rgb"].float_list.value, np.float32), rgb)
    # and the other way round: protobuf's bytes parse with our reader (non-packed floats too)
    ex.features.feature["extra"].int64_list.value.extend([-5, 2 ** 40])
    parsed = D.parse_example(ex.SerializeToString())
    assert parsed["id"] == [b"abcd"] and list(parsed["extra"]) == [-5, 2 ** 40]
    assert np.array_equal(parsed["mean_rgb"], rgb)


def test_sequence_example_round_trip_and_protobuf(tmp_path):
    _, SequenceExample = _proto_classes()
    rng = np.random.default_rng(1)
    rgb = D.dequantize(rng.integers(0, 256, (5, 1024), dtype=np.uint8))
    audio = D.dequantize(rng.integers(0, 256, (5, 128), dtype=np.uint8))
    video = D.FrameLevelVideo("vid1", np.array([7, 9]), rgb, audio)
    path = D.write_frame_level(tmp_path / "f.tfrecord", [video, video])
    (off, data), = list(D.iter_records(path))[:1]
    seq = SequenceExample.FromString(data)
    assert len(seq.feature_lists.feature_list["rgb"].feature) == 5
    assert seq.context.feature["id"].bytes_list.value == [b"vid1"]
    back = list(D.iter_frame_level([path]))
    assert len(back) == 2 and back[0].id == "vid1" and list(back[0].labels) == [7, 9]
    np.testing.assert_array_equal(back[0].rgb, rgb)  # quantise ∘ dequantise is exact on the grid
    np.testing.assert_array_equal(back[0].audio, audio)


def test_quantize_inverts_dequantize():
    q = np.arange(256, dtype=np.uint8)
    assert np.array_equal(D.quantize(D.dequantize(q)), q)
    # starter code: x · 4/255 + (4/512 − 2)
    assert D.dequantize(np.array([0, 255], np.uint8)).tolist() == pytest.approx([-1.9921875, 2.0078125], abs=1e-6)


def _shard(tmp_path, n=5):
    rng = np.random.default_rng(0)
    return D.write_video_level(tmp_path / "v.tfrecord", [f"v{i}" for i in range(n)], [[i, i + 1] for i in range(n)],
                               rng.normal(size=(n, 1024)).astype(np.float32), rng.normal(size=(n, 128)).astype(np.float32))


def test_video_level_round_trip(tmp_path):
    path = _shard(tmp_path)
    vl = D.read_video_level([path])
    assert vl.ids == [f"v{i}" for i in range(5)] and vl.rgb.shape == (5, 1024) and vl.audio.shape == (5, 128)
    assert vl.targets()[2, [2, 3]].all() and vl.targets().sum() == 10
    assert vl.features().shape == (5, 1152)


def test_corrupt_record_names_file_and_offset(tmp_path):
    path = _shard(tmp_path)
    raw = bytearray(path.read_bytes())
    lengths, off = [], 0
    while off < len(raw):
        (n,) = struct.unpack("<Q", raw[off:off + 8])
        lengths.append(off)
        off += n + 16
    raw[lengths[2] + 100] ^= 0x01  # one flipped bit in the third record's data
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=rf"v\.tfrecord: corrupt record at byte offset {lengths[2]}: data CRC"):
        D.read_video_level([path])


def test_corrupt_length_and_truncation(tmp_path):
    path = _shard(tmp_path)
    raw = path.read_bytes()
    bad = bytearray(raw)
    bad[3] ^= 0x10
    path.write_bytes(bytes(bad))
    with pytest.raises(DataError, match="byte offset 0: length CRC"):
        D.read_video_level([path])
    path.write_bytes(raw[:-10])
    with pytest.raises(DataError, match=r"truncated record at byte offset \d+"):
        D.read_video_level([path])
    path.write_bytes(raw + b"\x01\x02")
    with pytest.raises(DataError, match="truncated record header"):
        D.read_video_level([path])


def test_missing_and_wrong_shape(tmp_path):
    with pytest.raises(DataError, match="not found"):
        D.read_video_level([tmp_path / "nope.tfrecord"])
    path = tmp_path / "bad.tfrecord"
    with D.TFRecordWriter(path) as w:
        w.write(D.encode_example({"id": "x", "labels": np.array([1]), "mean_rgb": np.zeros(10, np.float32),
                                  "mean_audio": np.zeros(128, np.float32)}))
    with pytest.raises(DataError, match="mean_rgb must be 1024 floats"):
        D.read_video_level([path])


@pytest.mark.shared_data
def test_real_shards_read_fast():
    root = shared_path("youtube8m", "video_level")
    t0 = time.perf_counter()
    vl = D.read_video_level(D.shard_paths(root))
    seconds = time.perf_counter() - t0
    assert len(vl) == 8908 and len(set(vl.ids)) == 8908
    assert vl.rgb.shape == (8908, 1024) and np.isfinite(vl.rgb).all()
    assert all(l.max() < 3862 for l in vl.labels if len(l))
    assert seconds < 30  # ~1–3 s on a quiet 2-core machine
    train, evaluate = D.yt8m_split(root)
    assert [p.stem for p in train][-1] == "validate0023" and [p.stem for p in evaluate][0] == "validate0024"


@pytest.mark.shared_data
def test_real_vocabulary_partial():
    names = D.read_vocabulary(shared_path("youtube8m", "vocabulary_partial.csv"))
    assert len(names) == 3862 and 900 < sum(n is not None for n in names) <= 1000  # some rows have no name
    assert names[3] == "Concert"
