"""Text preprocessing rules, unigram naive Bayes (hand-computed), keyword histogram, TextCNN, video text I/O."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from affectlens.errors import DataError
from affectlens.videotag import models as M
from affectlens.videotag import text as T

torch.set_num_threads(1)


def test_keyword_rules():
    kws = ["The Beatles", "rock-and-roll!", "Top 10 Songs", "and", "Hey_Jude 1968", "ビートルズ"]
    assert T.preprocess_keywords(kws) == ["beatles", "rockandroll", "top", "songs", "heyjude"]


def test_title_rules_keep_case_numbers_and_stop_words():
    assert T.preprocess_title("The Beatles - Hey Jude (1968) | Official Video!!") == \
        ["The", "Beatles", "Hey", "Jude", "1968", "Official", "Video"]
    assert T.preprocess_title("東京の夜景 ドライブ") == []  # non-English text is dropped


def test_filter_label_words():
    words = T.label_words(["Concert", None, "Video game"])
    assert T.filter_label_words(["live", "concert", "Game", "music"], [0, 2], words) == ["live", "music"]
    assert T.filter_label_words(["game"], [1], words) == ["game"]


def test_unigram_matches_equation_3_by_hand():
    docs = [["a", "b"], ["a"], ["c"]]
    y = np.array([[1, 0], [1, 0], [0, 1]], bool)
    alpha = 0.5
    model = T.UnigramModel(alpha).fit(docs, y)
    # class 0: n=2 examples, n(a)=2, n(b)=1; class 1: n=1, n(c)=1; |L| = 2
    p0 = 2 / 3 * (2 + alpha) / (2 + 2 * alpha) * (1 + alpha) / (2 + 2 * alpha)  # words "a b"
    p1 = 1 / 3 * (0 + alpha) / (1 + 2 * alpha) * (0 + alpha) / (1 + 2 * alpha)
    np.testing.assert_allclose(model.predict_proba([["a", "b"]])[0], [p0 / (p0 + p1), p1 / (p0 + p1)], rtol=1e-5)
    # unknown words are skipped: the posterior falls back to the prior
    np.testing.assert_allclose(model.predict_proba([["zzz"]])[0], [2 / 3, 1 / 3], rtol=1e-5)
    assert T.UnigramModel().alpha == 0.001


def test_keyword_histogram_sums_one_hots():
    words = ["red", "crimson", "blue", "navy"]
    matrix = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    wv = T.WordVectors(words, matrix)
    hist = T.KeywordHistogram(n_clusters=2, seed=0).fit([words], wv)
    h = hist.transform([["red", "crimson", "navy", "unknown"], []])
    assert h.shape == (2, 2) and h[0].sum() == 3 and sorted(h[0].tolist()) == [1, 2] and h[1].sum() == 0
    assert T.KeywordHistogram().n_clusters == 1024


def test_word_vectors_trained_offline_and_loaded(tmp_path):
    sents = [["cat", "dog", "pet"], ["car", "road", "drive"]] * 20
    wv = T.train_word_vectors(sents, dim=8, epochs=2)
    assert wv.dim == 8 and set(wv.words) == {"cat", "dog", "pet", "car", "road", "drive"}
    path = tmp_path / "vectors.txt"
    path.write_text("2 3\nhello 0.1 0.2 0.3\nworld 1 2 3\n")
    loaded = T.load_word_vectors(path)
    assert loaded.words == ["hello", "world"] and loaded.matrix.shape == (2, 3)
    bad = tmp_path / "bad.txt"
    bad.write_text("not a word2vec file\n")
    with pytest.raises(DataError, match="bad.txt"):
        T.load_word_vectors(bad)


def test_textcnn_paper_shape_and_feature():
    cfg = M.textcnn_paper(vocab_size=11, embed_dim=300, num_classes=7)
    assert cfg.widths == (1, 2, 3, 4, 5, 6, 7, 8) and cfg.channels == 512 and cfg.hidden == 4096
    assert cfg.weight_decay == 1e-7
    model = M.TextCNN(cfg, np.random.default_rng(0).normal(size=(10, 300)).astype(np.float32)).eval()
    ids = torch.tensor([[1, 2, 3, 0, 0], [4, 0, 0, 0, 0]])
    assert model.forward_features(ids).shape == (2, 4096) and model(ids).shape == (2, 7)
    assert not model.embed.weight.requires_grad


def test_textcnn_learns_tiny_task():
    from affectlens.metrics.multilabel import gap
    from affectlens.videotag.recipe import Split, TrainConfig, fit

    rng = np.random.default_rng(0)
    vocab = 30
    ids = rng.integers(1, vocab + 1, (200, 6))
    y = np.stack([(ids == 3).any(1), (ids == 7).any(1) & (ids == 8).any(1)], 1)
    model = M.TextCNN(M.textcnn_small(vocab_size=vocab + 1, embed_dim=8, channels=8, hidden=16, num_classes=2),
                      rng.normal(size=(vocab, 8)).astype(np.float32))
    fit(model, Split(list(range(200)), ids, y), np.arange(2), TrainConfig(epochs=10, batch_size=32, lr=2e-2),
        None, log=lambda s: None)
    model.eval()
    with torch.no_grad():
        p = torch.sigmoid(model(torch.from_numpy(ids))).numpy()
    assert gap(p, y) > 0.85


def test_videotext_round_trip_and_bad_row(tmp_path):
    path = T.write_videotext(tmp_path / "t.jsonl", [{"id": "ab", "title": "Hi", "keywords": ["x"]}], synthetic=True)
    assert T.read_videotext(path) == {"ab": {"title": "Hi", "keywords": ["x"], "synthetic": True}}
    path.write_text(path.read_text() + '{"title": "no id"}\n')
    with pytest.raises(DataError, match=r"t\.jsonl:2: bad video text row"):
        T.read_videotext(path)


def test_textdata_filter_labels_variant():
    from affectlens.videotag.ablation import TextData

    texts = {"v1": {"title": "Live Concert in Paris", "keywords": ["concert", "paris", "Video Game"]}}
    words = T.label_words(["Concert", "Video game"])
    plain = TextData(["v1", "v2"], [np.array([0]), np.array([1])], texts)
    filtered = TextData(["v1", "v2"], [np.array([0]), np.array([1])], texts, words)
    assert plain.keywords[0] == ["concert", "paris", "video", "game"] and plain.titles[1] == []
    assert filtered.keywords[0] == ["paris", "video", "game"]  # only the video's own label (0) is removed
    assert filtered.titles[0] == ["Live", "in", "Paris"]


def test_label_overlap_counts_videos_whose_keywords_name_their_labels():
    words = T.label_words(["Concert", "Video game", None])
    kw = [["concert", "live"], ["game", "play", "fun", "video"], [], ["car"]]
    labels = [[0], [1], [0], [2]]
    out = T.label_overlap(kw, labels, words)
    assert out["videos_with_keywords"] == 3                       # the empty list does not count
    assert out["share_with_a_label_word"] == pytest.approx(2 / 3)  # 'concert'; 'game' and 'video'
    assert out["mean_share_of_label_words"] == pytest.approx((1 / 2 + 2 / 4 + 0) / 3)

