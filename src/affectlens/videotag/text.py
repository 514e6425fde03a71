"""Text for video tagging (paper §3): preprocessing, unigram naive Bayes, keyword histogram, and the
inputs of the neural text models (``models.TextCNN`` on title word ids, ``models.KeywordClassifier``
on the keyword histogram).

* Keywords: lower-cased, punctuation and numbers removed, stop words "and"/"the" removed; a
  multi-word keyword contributes its words (the paper counts ~8 English keyword *words* a video).
* Titles: symbols and punctuation removed only (case, numbers and stop words kept, for syntax).
* Non-English text (mostly non-ASCII letters) is dropped, as the paper drops non-English text.
* Unigram model: ``Pr(l | k_1..k_m) ∝ n(l)/n(∘) · Π_i (n(k_i ∩ l) + α) / (n(l) + α|L|)`` with
  α = 0.001, exactly the paper's equation (3); words unseen in training are skipped.
* Keyword histogram: word vectors of the training keywords k-means-clustered into 1024 centroids;
  a video's feature is the sum of its keywords' one-hot nearest-centroid vectors.

Word vectors come from a word2vec file the user names (binary or text, loaded with gensim) or,
by default, are trained offline with gensim's Word2Vec on the training corpus itself.
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from affectlens.errors import DataError
from affectlens.files import atomic_path

__all__ = ["preprocess_keywords", "preprocess_title", "is_english", "filter_label_words",
           "label_words", "UnigramModel", "WordVectors", "load_word_vectors", "train_word_vectors",
           "KeywordHistogram", "title_ids", "read_videotext", "write_videotext"]

STOP_WORDS = frozenset({"and", "the"})
_PUNCT = re.compile(r"[^\w\s]|_", re.UNICODE)
_DIGITS = re.compile(r"\d+")


def is_english(text: str) -> bool:
    """Heuristic stand-in for the paper's language filter: ≥ 80 % of the letters are ASCII."""
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(c.isascii() for c in letters) >= 0.8 * len(letters)


def _strip_symbols(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    return _PUNCT.sub("", text)


def preprocess_keywords(keywords: str | Iterable[str]) -> list[str]:
    """Keyword tags → words: lower case, no punctuation, no numbers, no "and"/"the", English only."""
    tags = [keywords] if isinstance(keywords, str) else list(keywords)
    words: list[str] = []
    for tag in tags:
        if not is_english(tag):
            continue
        clean = _DIGITS.sub(" ", _strip_symbols(tag.lower()))
        words.extend(w for w in clean.split() if w not in STOP_WORDS)
    return words


def preprocess_title(title: str) -> list[str]:
    """Title → words with symbols and punctuation removed only; a non-English title gives []."""
    if not title or not is_english(title):
        return []
    return _strip_symbols(title).split()


def label_words(names: Sequence[str | None]) -> list[set[str]]:
    """Lower-case word sets of each class name (``None`` → empty set)."""
    return [set(preprocess_keywords(n)) if n else set() for n in names]


def label_overlap(keywords: Sequence[Sequence[str]], labels: Sequence[Iterable[int]],
                  words_by_class: Sequence[set]) -> dict:
    """How much the keywords give the labels away (the paper's overlap analysis): of the videos with
    keywords, the share with at least one keyword word from its own labels' names, and the mean
    share of a video's keyword words that are such words."""
    rows = [(set(kw), set().union(*[words_by_class[int(c)] for c in lab]) if len(lab) else set())
            for kw, lab in zip(keywords, labels) if kw]
    hit = [bool(kw & names) for kw, names in rows]
    share = [len(kw & names) / len(kw) for kw, names in rows]
    return {"videos_with_keywords": len(rows), "share_with_a_label_word": float(np.mean(hit)) if rows else 0.0,
            "mean_share_of_label_words": float(np.mean(share)) if rows else 0.0}


def filter_label_words(tokens: Sequence[str], labels: Iterable[int], words_by_class: Sequence[set]) -> list[str]:
    """The paper's "filter labels" variant: delete every word of the video's own label names."""
    banned = set().union(*[words_by_class[int(l)] for l in labels]) if labels is not None else set()
    return [t for t in tokens if t.lower() not in banned]


class UnigramModel:
    """Multinomial naive Bayes over words, add-α smoothing as in the paper's equation (3)."""

    def __init__(self, alpha: float = 0.001):
        self.alpha = alpha

    def fit(self, docs: Sequence[Sequence[str]], y: np.ndarray) -> "UnigramModel":
        """``docs``: token lists; ``y``: bool (N, C). Only classes with examples get a prior."""
        from scipy import sparse

        self.vocab = {w: i for i, w in enumerate(sorted({w for d in docs for w in d}))}
        x = self._counts(docs)  # (N, V)
        y = sparse.csr_matrix(y.astype(np.float32))
        n_kl = np.asarray((x.T @ y).todense(), dtype=np.float64)  # (V, C) word-label co-occurrences
        n_l = np.asarray(y.sum(0)).ravel().astype(np.float64)  # examples per label
        num_classes = y.shape[1]
        self.log_cond = (np.log(n_kl + self.alpha) - np.log(n_l + self.alpha * num_classes)[None, :]).astype(np.float32)
        with np.errstate(divide="ignore"):
            self.log_prior = np.log(n_l / max(len(docs), 1)).astype(np.float32)
        return self

    def _counts(self, docs: Sequence[Sequence[str]]):
        from scipy import sparse

        rows, cols = [], []
        for i, d in enumerate(docs):
            ids = [self.vocab[w] for w in d if w in self.vocab]
            rows.extend([i] * len(ids))
            cols.extend(ids)
        data = np.ones(len(rows), np.float32)
        return sparse.csr_matrix((data, (rows, cols)), shape=(len(docs), len(self.vocab)))

    def log_posterior(self, docs: Sequence[Sequence[str]]) -> np.ndarray:
        """Unnormalised log Pr(l | words) (N, C); −inf for classes never seen in training."""
        return np.asarray(self._counts(docs) @ self.log_cond) + self.log_prior[None, :]

    def predict_proba(self, docs: Sequence[Sequence[str]]) -> np.ndarray:
        """Posterior over labels (rows sum to 1; a document without known words gets the prior)."""
        z = self.log_posterior(docs)
        z = z - z.max(1, keepdims=True)
        p = np.exp(z)
        return (p / p.sum(1, keepdims=True)).astype(np.float32)


@dataclass
class WordVectors:
    """Word → vector table (``matrix`` row i is ``words[i]``)."""

    words: list[str]
    matrix: np.ndarray

    def __post_init__(self):
        self.index = {w: i for i, w in enumerate(self.words)}

    @property
    def dim(self) -> int:
        return self.matrix.shape[1]


def load_word_vectors(path: str | Path, limit: int | None = None) -> WordVectors:
    """Load a word2vec file (binary ``.bin`` or text) with gensim."""
    from gensim.models import KeyedVectors

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "word-vector file not found")
    binary = path.suffix.lower() in (".bin", ".gz") and not path.name.endswith(".txt.gz")
    try:
        kv = KeyedVectors.load_word2vec_format(str(path), binary=binary, limit=limit)
    except Exception as e:  # gensim raises many types for a malformed file
        raise DataError(path, f"not a word2vec file ({type(e).__name__}: {e})") from None
    return WordVectors(list(kv.index_to_key), np.asarray(kv.vectors, np.float32))


def train_word_vectors(sentences: Sequence[Sequence[str]], dim: int = 300, seed: int = 0,
                       epochs: int = 10) -> WordVectors:
    """Word2Vec (skip-gram) trained offline on the corpus itself (1 worker: deterministic)."""
    from gensim.models import Word2Vec

    sentences = [list(s) for s in sentences if s]
    if not sentences:
        raise ValueError("no text to train word vectors on")
    model = Word2Vec(sentences, vector_size=dim, window=5, min_count=1, sg=1, workers=1, seed=seed,
                     epochs=epochs)
    return WordVectors(list(model.wv.index_to_key), np.asarray(model.wv.vectors, np.float32))


class KeywordHistogram:
    """Bag of word-vector clusters: k-means (1024) over the training keywords' vectors."""

    def __init__(self, n_clusters: int = 1024, seed: int = 0):
        self.n_clusters, self.seed = n_clusters, seed

    def fit(self, docs: Sequence[Sequence[str]], wv: WordVectors) -> "KeywordHistogram":
        from sklearn.cluster import MiniBatchKMeans

        words = sorted({w for d in docs for w in d if w in wv.index})
        if not words:
            raise ValueError("no training keyword has a word vector")
        x = wv.matrix[[wv.index[w] for w in words]]
        k = min(self.n_clusters, len(words))
        km = MiniBatchKMeans(n_clusters=k, random_state=self.seed, n_init=1, batch_size=2048).fit(x)
        self.centroids = km.cluster_centers_.astype(np.float32)
        self.wv = wv
        self._cache: dict[str, int] = {}
        return self

    def _cluster(self, word: str) -> int | None:
        if word not in self._cache:
            i = self.wv.index.get(word)
            if i is None:
                return None
            self._cache[word] = int(np.argmin(((self.centroids - self.wv.matrix[i]) ** 2).sum(1)))
        return self._cache[word]

    def transform(self, docs: Sequence[Sequence[str]]) -> np.ndarray:
        """(N, n_clusters) float32: the summed one-hot cluster vectors of each video's keywords."""
        out = np.zeros((len(docs), self.n_clusters), np.float32)
        for i, d in enumerate(docs):
            for w in d:
                c = self._cluster(w)
                if c is not None:
                    out[i, c] += 1.0
        return out


def title_ids(docs: Sequence[Sequence[str]], wv: WordVectors, max_len: int = 32) -> np.ndarray:
    """Token ids (N, max_len) into ``wv`` (+1; 0 = padding); words without a vector are dropped."""
    out = np.zeros((len(docs), max_len), np.int64)
    for i, d in enumerate(docs):
        ids = [wv.index[w] + 1 for w in d if w in wv.index][:max_len]
        out[i, :len(ids)] = ids
    return out


# ---------------------------------------------------------------------------- YouTube-8M-Text files

def write_videotext(path: str | Path, rows: Iterable[dict], synthetic: bool) -> Path:
    """JSON lines ``{"id", "title", "keywords": [...], "synthetic"}`` (atomic)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({"id": r["id"], "title": r.get("title", ""),
                                    "keywords": list(r.get("keywords", [])), "synthetic": synthetic},
                                   ensure_ascii=False) + "\n")
    return Path(path)


def read_videotext(path: str | Path) -> dict[str, dict]:
    """id → {"title", "keywords", "synthetic"}; a malformed line raises DataError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "video text file not found")
    out: dict[str, dict] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                vid, title, kws = str(r["id"]), str(r.get("title", "")), r.get("keywords", [])
                if not isinstance(kws, list):
                    raise TypeError("keywords must be a list")
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(path, f"bad video text row ({e})", line=line_no) from None
            out[vid] = {"title": title, "keywords": [str(k) for k in kws], "synthetic": bool(r.get("synthetic"))}
    return out
