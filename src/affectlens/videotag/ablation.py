"""`videotag ablation`: the paper's text experiments (Tables 5 and 6; Table 4's ensembling is ``recipe.run_ensemble``).

Table 5: a mixture of experts on visual, audio, visual+audio, +keyword histogram, +TextCNN title
feature. Table 6: the text models alone (TextCNN on titles, keyword classifier on the keyword
histogram, unigram naive Bayes on titles), each scored on the evaluation videos that have that
text. When the video text is synthetic (``affectlens synth videotext``) every output says so.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from affectlens.files import write_json
from affectlens.metrics.multilabel import all_metrics
from affectlens.videotag import data as D
from affectlens.videotag import models as M
from affectlens.videotag import text as T
from affectlens.videotag.recipe import Split, TrainConfig, fit, fit_scores
from affectlens.videotag.synth import label_lexicon

__all__ = ["TextData", "prepare_text", "run_ablation", "label_words_of"]


class TextData:
    """Preprocessed keyword and title tokens of the videos of one split."""

    def __init__(self, ids: Sequence[str], labels: Sequence[np.ndarray], texts: dict,
                 words_by_class: list[set] | None = None):
        self.keywords, self.titles = [], []
        for vid, lab in zip(ids, labels):
            row = texts.get(vid, {"title": "", "keywords": []})
            kw, title = T.preprocess_keywords(row["keywords"]), T.preprocess_title(row["title"])
            if words_by_class is not None:  # the paper's "filter labels" variant
                kw = T.filter_label_words(kw, lab, words_by_class)
                title = T.filter_label_words(title, lab, words_by_class)
            self.keywords.append(kw)
            self.titles.append(title)


def prepare_text(tr: D.VideoLevelData, ev: D.VideoLevelData, text_path: Path,
                 words: list[set] | None) -> tuple[TextData, TextData, bool]:
    """Both splits' text, with every word of a video's own label names removed when ``words``
    (``label_words_of``) is given: the paper's "filter labels" variant."""
    texts = T.read_videotext(text_path)
    synthetic = any(r["synthetic"] for r in texts.values())
    return TextData(tr.ids, tr.labels, texts, words), TextData(ev.ids, ev.labels, texts, words), synthetic


def _features(model, x: np.ndarray, batch: int = 512) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return np.concatenate([model.forward_features(torch.from_numpy(x[s:s + batch])).numpy()
                               for s in range(0, len(x), batch)] or [np.zeros((0, 1), np.float32)])


def _classes(y: np.ndarray, min_count: int) -> np.ndarray:
    return np.flatnonzero(y.sum(0) >= max(min_count, 1))


def _train_text_model(model, x: np.ndarray, y: np.ndarray, keep: np.ndarray, cfg: TrainConfig, log,
                      min_count: int, hardware=None) -> np.ndarray:
    """Fit on the rows in ``keep`` through the engine; return the classes the model predicts."""
    classes = _classes(y[keep], min_count)
    fit(model, Split(list(np.flatnonzero(keep)), x[keep], y[keep]), classes, cfg, None, log, hardware=hardware)
    return classes


def _scores(model, x: np.ndarray, classes: np.ndarray, num_classes: int, batch: int = 512) -> np.ndarray:
    model.eval()
    out = np.zeros((len(x), num_classes), np.float32)
    with torch.no_grad():
        for s in range(0, len(x), batch):
            out[s:s + batch, classes] = torch.sigmoid(model(torch.from_numpy(x[s:s + batch]))).numpy()
    return out


def _text_models(tr, ev, ttr: TextData, tev: TextData, wv: T.WordVectors, epochs: int, log, small: bool,
                 min_count: int, hardware=None):
    """Keyword histogram + keyword classifier, TextCNN + its title feature, unigram → (feats, table6)."""
    ytr, yev = tr.targets(), ev.targets()
    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=1e-3, weight_decay=1e-7, threads=2)
    hist = T.KeywordHistogram(1024).fit([k for k in ttr.keywords if k], wv)
    k_tr, k_ev = hist.transform(ttr.keywords), hist.transform(tev.keywords)
    has_kw_tr, has_kw_ev = k_tr.sum(1) > 0, k_ev.sum(1) > 0
    kc = M.KeywordClassifier(k_tr.shape[1], 512, len(_classes(ytr[has_kw_tr], min_count)))
    kc_classes = _train_text_model(kc, k_tr, ytr, has_kw_tr, cfg, log, min_count, hardware)

    mk = M.textcnn_small if small else M.textcnn_paper
    ids_tr, ids_ev = T.title_ids(ttr.titles, wv), T.title_ids(tev.titles, wv)
    has_t_tr, has_t_ev = ids_tr.any(1), ids_ev.any(1)
    cnn = M.TextCNN(mk(vocab_size=len(wv.words) + 1, embed_dim=wv.dim,
                       num_classes=len(_classes(ytr[has_t_tr], min_count))), wv.matrix)
    cnn_classes = _train_text_model(cnn, ids_tr, ytr, has_t_tr, cfg, log, min_count, hardware)
    t_tr = _features(cnn, ids_tr) * has_t_tr[:, None]  # no title → zero feature
    t_ev = _features(cnn, ids_ev) * has_t_ev[:, None]

    uni = T.UnigramModel(alpha=0.001).fit([t for t in ttr.titles if t], ytr[has_t_tr])
    known = np.array([any(w in uni.vocab for w in t) for t in tev.titles])
    n = ytr.shape[1]
    table6 = {
        "TextCNN (titles)": all_metrics(_scores(cnn, ids_ev, cnn_classes, n)[has_t_ev], yev[has_t_ev]),
        "Keywords (histogram)": all_metrics(_scores(kc, k_ev, kc_classes, n)[has_kw_ev], yev[has_kw_ev]),
        "Unigram (titles)": all_metrics(uni.predict_proba([t for t, k in zip(tev.titles, known) if k]), yev[known]),
    }
    return (k_tr, k_ev, t_tr, t_ev), table6


def run_ablation(train_paths: Sequence[Path], eval_paths: Sequence[Path], text_path: Path, out: str | Path,
                 vocabulary: Path | None = None, word2vec: Path | None = None, epochs: int = 4,
                 filter_labels: bool = False, text_size: str = "small", num_experts: int = 2, vector_dim: int = 100,
                 min_class_count: int = 3, log: Callable[[str], None] = print, hardware=None) -> dict:
    """Tables 5 and 6 end to end; writes ``out/ablation.json`` and returns it.

    ``text_size``: ``paper`` builds the paper's TextCNN (widths 1..8 × 512 channels, a 4096-unit
    hidden layer), ``small`` a CPU size (64 channels, 512 hidden). ``vector_dim``: the width of the
    word vectors trained on the corpus (the paper's GoogleNews word2vec is 300-d; ``word2vec`` loads
    such a file instead). Table 5 also gets the text-only row (keywords + titles), and the result
    the label/keyword overlap of the evaluation videos (``text.label_overlap``).

    For CPU budgets only classes with ≥ ``min_class_count`` training videos are modelled (the
    others score 0 in every row, so rows stay comparable; metrics still use all labels). Every
    model that learns (keyword classifier, TextCNN, the MoE rows) trains on the engine with
    ``hardware``."""
    out = Path(out)
    tr, ev = D.read_video_level(train_paths), D.read_video_level(eval_paths)
    if text_size not in ("paper", "small"):
        raise ValueError(f"text_size must be 'paper' or 'small', not {text_size!r}")
    label_words = label_words_of(vocabulary)  # read once: for --filter-labels and the overlap
    ttr, tev, synthetic = prepare_text(tr, ev, Path(text_path), label_words if filter_labels else None)
    wv = (T.load_word_vectors(word2vec) if word2vec else
          T.train_word_vectors([k for k in ttr.keywords if k] + [[w.lower() for w in t] for t in ttr.titles if t],
                               dim=vector_dim))
    if not word2vec:  # titles keep their case: give their words the lower-case vectors
        wv = _case_folded(wv, {w for t in ttr.titles + tev.titles for w in t})
    (k_tr, k_ev, t_tr, t_ev), table6 = _text_models(tr, ev, ttr, tev, wv, epochs, log, text_size == "small", min_class_count,
                                                    hardware)
    ytr, yev = tr.targets(), ev.targets()
    rows = {"visual + audio": [tr.rgb, tr.audio], "visual": [tr.rgb], "audio": [tr.audio],
            "visual + audio + keywords": [tr.rgb, tr.audio, k_tr],
            "visual + audio + keywords + titles": [tr.rgb, tr.audio, k_tr, t_tr], "keywords + titles": [k_tr, t_tr]}
    evrows = {"visual + audio": [ev.rgb, ev.audio], "visual": [ev.rgb], "audio": [ev.audio],
              "visual + audio + keywords": [ev.rgb, ev.audio, k_ev],
              "visual + audio + keywords + titles": [ev.rgb, ev.audio, k_ev, t_ev], "keywords + titles": [k_ev, t_ev]}
    cfg = TrainConfig(model={"kind": "moe", "num_experts": num_experts}, epochs=epochs, batch_size=256, lr=1e-2)
    table5 = {}
    for name in rows:
        scores = fit_scores(np.concatenate(rows[name], 1), ytr, np.concatenate(evrows[name], 1), cfg, log,
                            min_class_count=min_class_count, hardware=hardware)
        table5[name] = all_metrics(scores, yev)
        log(f"{name}: GAP {table5[name]['gap']:.4f}")
    res = {"synthetic_text": synthetic, "filter_labels": filter_labels, "train_videos": len(tr),
           "eval_videos": len(ev), "word_vectors": str(word2vec) if word2vec else f"word2vec trained on corpus ({wv.dim}-d)",
           "min_class_count": min_class_count, "num_experts": num_experts, "epochs": epochs,
           "text_size": text_size, "vector_dim": wv.dim, "table5": table5, "table6": table6,
           "label_overlap": T.label_overlap(tev.keywords, ev.labels, label_words)}
    write_json(out / ("ablation_filtered.json" if filter_labels else "ablation.json"), res)
    return res


def label_words_of(vocabulary: Path | None) -> list[set]:
    """Each class's name words, with the synthetic generator's pseudo-names for classes the
    vocabulary lacks (so synthetic text is measured against the words it was made from)."""
    names, _ = label_lexicon(vocabulary)
    return T.label_words([" ".join(n) for n in names])


def _case_folded(wv: T.WordVectors, words: set) -> T.WordVectors:
    extra = [w for w in words if w not in wv.index and w.lower() in wv.index]
    if not extra:
        return wv
    return T.WordVectors(wv.words + extra, np.concatenate([wv.matrix, wv.matrix[[wv.index[w.lower()] for w in extra]]]))
