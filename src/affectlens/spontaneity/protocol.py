"""The paper's protocols: train the seven nets, the two -SVM ensembles, and evaluate them
subject-independently (k groups of subjects, default 10; or leave-one-subject-out).

Error rates are averaged over folds **and** over several seeds; the paper's footnote explains why
picking the best seed on the test set reports a number no user would get. We print the mean, the
standard deviation over folds (of the seed-averaged fold errors) and over seeds (of the
fold-averaged errors).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from affectlens.spontaneity.ensemble import ENSEMBLES, LinearSVMEnsemble, concat_features
from affectlens.spontaneity.model import SpontaneityNet, SpontaneityNetConfig, table_configs
from affectlens.training import seed_everything

METHODS = ("DiffCNN", "CompCNN-Sub@1", "CompCNN-Sub@2", "CompCNN-Sub@3", "CompCNN-Sub-SVM",
           "CompCNN-Comb@1", "CompCNN-Comb@2", "CompCNN-Comb@3", "CompCNN-Comb-SVM")
# Table 1 (USTC-NVIE, subject-independent 10-fold: subset of 1028 samples / 80 subjects, full set
# of 4203 / 148) and Table 2 (SPOS, leave-one-subject-out), error rate in %.
PAPER_TABLE1 = {"DiffCNN": (3.70, 8.47), "CompCNN-Sub@1": (2.82, 7.47), "CompCNN-Sub@2": (3.11, 7.61),
                "CompCNN-Sub@3": (3.79, 7.35), "CompCNN-Sub-SVM": (2.43, 6.52), "CompCNN-Comb@1": (2.33, 6.40),
                "CompCNN-Comb@2": (2.43, 7.21), "CompCNN-Comb@3": (2.33, 6.83), "CompCNN-Comb-SVM": (2.04, 5.95)}
PAPER_TABLE2 = {"DiffCNN": 21.37, "CompCNN-Sub@1": 18.38, "CompCNN-Sub@2": 17.95, "CompCNN-Sub@3": 20.51,
                "CompCNN-Sub-SVM": 16.66, "CompCNN-Comb@1": 19.49, "CompCNN-Comb@2": 19.91,
                "CompCNN-Comb@3": 19.91, "CompCNN-Comb-SVM": 19.06}


@dataclass(frozen=True)
class TrainConfig:
    """How each net is fitted (the paper does not give its optimiser; Adam is our choice)."""

    size: str = "small"        # net widths: tiny | small | paper (see model.py)
    epochs: int = 20
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    svm_c: float = 1.0
    threads: int = 1


@dataclass(frozen=True)
class CVConfig:
    """A flat experiment file (configs/spontaneity_*.yaml): the protocol plus how nets are fitted."""

    protocol: str = "kfold"
    folds: int = 10
    seeds: int = 3
    first_seed: int = 0
    train: TrainConfig = TrainConfig()


def load_cv_config(path) -> CVConfig:
    """Read a flat YAML of CVConfig and TrainConfig fields; unknown keys are an error naming the file."""
    import dataclasses

    import yaml

    from affectlens.errors import DataError

    try:
        raw = yaml.safe_load(open(path, encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise DataError(path, f"not a readable YAML config ({type(e).__name__})") from None
    cv_keys = {f.name for f in dataclasses.fields(CVConfig)} - {"train"}
    tc_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(raw) - cv_keys - tc_keys
    if unknown:
        raise DataError(path, f"unknown key(s) {', '.join(sorted(unknown))}")
    tc = TrainConfig(**{k: v for k, v in raw.items() if k in tc_keys})
    return CVConfig(train=tc, **{k: v for k, v in raw.items() if k in cv_keys})


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, 44, 44) uint8 → (N, 1, 44, 44) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).float().div_(127.5).sub_(1.0).unsqueeze(1)


def subject_folds(subjects: Sequence[str], protocol: str = "kfold", k: int = 10,
                  split_seed: int = 0) -> List[Tuple[np.ndarray, np.ndarray]]:
    """(train_idx, test_idx) per fold; no subject is ever on both sides.

    ``kfold``: subjects shuffled with ``split_seed`` and dealt into ``k`` groups of near-equal
    sample counts (greedy: each subject to the currently smallest group). ``loso``: one fold per subject.
    """
    subjects = np.asarray(subjects)
    uniq = np.unique(subjects)
    if protocol == "loso":
        groups = [[s] for s in uniq]
    elif protocol == "kfold":
        if not 2 <= k <= len(uniq):
            raise ValueError(f"k={k} folds need between 2 and {len(uniq)} (the number of subjects)")
        order = np.random.default_rng(split_seed).permutation(uniq)
        counts = {s: int((subjects == s).sum()) for s in uniq}
        groups, sizes = [[] for _ in range(k)], np.zeros(k, int)
        for s in sorted(order, key=lambda s: -counts[s]):  # stable: ties keep the shuffled order
            g = int(np.argmin(sizes))
            groups[g].append(s)
            sizes[g] += counts[s]
    else:
        raise ValueError(f"protocol must be 'kfold' or 'loso', not {protocol!r}")
    folds = []
    for g in groups:
        test = np.isin(subjects, g)
        folds.append((np.flatnonzero(~test), np.flatnonzero(test)))
    return folds


def train_net(config: SpontaneityNetConfig, onset: torch.Tensor, apex: torch.Tensor, labels: torch.Tensor,
              tc: TrainConfig, seed: int = 0, history: Optional[list] = None) -> SpontaneityNet:
    """Fit one net with Adam and cross-entropy on (N, 1, 44, 44) tensors; returns it in eval mode."""
    seed_everything(seed)
    net = SpontaneityNet(config)
    opt = torch.optim.Adam(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    n = len(labels)
    net.train()
    for _ in range(tc.epochs):
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, tc.batch_size):
            idx = order[i:i + tc.batch_size]
            loss = loss_fn(net(onset[idx], apex[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        if history is not None:
            history.append(total / max(n, 1))
    return net.eval()


@torch.no_grad()
def net_outputs(net: SpontaneityNet, onset: torch.Tensor, apex: torch.Tensor, batch: int = 256):
    """(P(spontaneous) (N,), FC2 features (N, D)) in eval mode."""
    net.eval()
    probs, feats = [], []
    for i in range(0, len(onset), batch):
        f = net.forward_features(onset[i:i + batch], apex[i:i + batch])
        probs.append(torch.softmax(net.forward_head(f), 1)[:, 1])
        feats.append(f)
    return torch.cat(probs).numpy(), torch.cat(feats).numpy()


def fit_fold(onset: torch.Tensor, apex: torch.Tensor, labels: torch.Tensor, train: np.ndarray,
             test: np.ndarray, tc: TrainConfig, seed: int, tick=None) -> Dict[str, np.ndarray]:
    """Train the seven nets and two SVMs on ``train``; predicted labels on ``test`` for all nine methods."""
    tr, te = torch.from_numpy(train), torch.from_numpy(test)
    preds, feats_tr, feats_te = {}, {}, {}
    for config in table_configs(tc.size):
        net = train_net(config, onset[tr], apex[tr], labels[tr], tc, seed)
        p_te, feats_te[config.name] = net_outputs(net, onset[te], apex[te])
        _, feats_tr[config.name] = net_outputs(net, onset[tr], apex[tr])
        preds[config.name] = (p_te > 0.5).astype(np.int64)
        if tick is not None:
            tick()
    y_tr = labels[tr].numpy()
    for name, members in ENSEMBLES.items():
        svm = LinearSVMEnsemble(C=tc.svm_c).fit(concat_features(feats_tr, members), y_tr, seed)
        preds[name] = svm.predict(concat_features(feats_te, members))
    return preds


def run_cv(onset: np.ndarray, apex: np.ndarray, labels: np.ndarray, subjects: np.ndarray,
           protocol: str = "kfold", folds: int = 10, seeds: Sequence[int] = (0, 1, 2),
           tc: TrainConfig = TrainConfig(), split_seed: int = 0, progress: bool = False,
           on_fold: Optional[Callable[[int, int, Dict[str, float]], None]] = None) -> dict:
    """Subject-independent cross-validation of all nine methods.

    Returns a JSON-able dict: ``errors[method][seed][fold]`` (fractions), a ``summary`` per method
    (error % mean, std over folds, std over seeds, pooled error %) and the run's settings.
    ``on_fold(seed, fold, {method: error})`` is called after every fold (logging from scripts).
    """
    torch.set_num_threads(max(1, min(tc.threads, 2)))
    splits = subject_folds(subjects, protocol, folds, split_seed)
    o, a, y = to_tensor(onset), to_tensor(apex), torch.from_numpy(np.asarray(labels, np.int64))
    errors = {m: np.zeros((len(seeds), len(splits))) for m in METHODS}
    wrong = {m: 0 for m in METHODS}
    with _progress(progress, len(seeds) * len(splits) * 7, f"{protocol} CV") as tick:
        for si, seed in enumerate(seeds):
            for fi, (train, test) in enumerate(splits):
                preds = fit_fold(o, a, y, train, test, tc, seed + 1000 * fi, tick)
                for m in METHODS:
                    miss = preds[m] != labels[test]
                    errors[m][si, fi] = miss.mean()
                    wrong[m] += int(miss.sum())
                if on_fold is not None:
                    on_fold(seed, fi, {m: float(errors[m][si, fi]) for m in METHODS})
    n_eval = len(seeds) * len(labels)
    return {"protocol": protocol, "folds": len(splits), "seeds": list(seeds), "samples": int(len(labels)),
            "subjects": int(len(np.unique(subjects))), "train": asdict(tc),
            "errors": {m: e.tolist() for m, e in errors.items()},
            "summary": {m: summarise(errors[m], wrong[m] / n_eval) for m in METHODS}}


def summarise(err: np.ndarray, pooled: float) -> dict:
    """err: (seeds, folds) fractions → percentages."""
    return {"mean": 100 * float(err.mean()),
            "std_folds": 100 * float(err.mean(0).std(ddof=1)) if err.shape[1] > 1 else 0.0,
            "std_seeds": 100 * float(err.mean(1).std(ddof=1)) if err.shape[0] > 1 else 0.0,
            "pooled": 100 * float(pooled)}


class _progress:
    """A rich progress bar whose ``tick()`` advances it (a no-op when disabled)."""

    def __init__(self, enabled: bool, total: int, label: str):
        self.enabled, self.total, self.label = enabled, total, label

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        self.bar.start()
        task = self.bar.add_task(f"{self.label}: nets trained", total=self.total)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.stop()
        return False


def table_rows(result: dict) -> List[Tuple[str, str, str, str]]:
    """(method, paper column(s), ours mean ± std over folds, std over seeds) in Table 1's order."""
    rows = []
    loso = result["protocol"] == "loso"
    for m in METHODS:
        s = result["summary"][m]
        paper = f"{PAPER_TABLE2[m]:.2f}" if loso else "{:.2f} / {:.2f}".format(*PAPER_TABLE1[m])
        rows.append((m, paper, f"{s['mean']:.2f} ± {s['std_folds']:.2f}", f"{s['std_seeds']:.2f}"))
    return rows


def print_table(result: dict, console=None, title: str = "") -> None:
    """Table 1's layout (Table 2's for leave-one-subject-out) with the paper's numbers beside ours."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    loso = result["protocol"] == "loso"
    paper_col = "paper SPOS (LOSO)" if loso else "paper subset / full"
    table = Table(title=title or f"Error rate % — {result['protocol']}, {result['folds']} folds × "
                                 f"{len(result['seeds'])} seeds, {result['samples']} pairs, {result['subjects']} subjects")
    for col in ("Method", paper_col, "ours: mean ± std(folds)", "std(seeds)"):
        table.add_column(col, justify="left" if col == "Method" else "right")
    for row in table_rows(result):
        table.add_row(*row)
    console.print(table)


def error_bars_png(result: dict, path) -> None:
    """Bar chart: our error per method (with fold std) beside the paper's subset column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from affectlens.utils import atomic_path

    loso = result["protocol"] == "loso"
    ours = [result["summary"][m]["mean"] for m in METHODS]
    err = [result["summary"][m]["std_folds"] for m in METHODS]
    paper = [PAPER_TABLE2[m] if loso else PAPER_TABLE1[m][0] for m in METHODS]
    x = np.arange(len(METHODS))
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.bar(x - 0.2, ours, 0.4, yerr=err, label="ours", capsize=3)
    ax.bar(x + 0.2, paper, 0.4, label="paper (SPOS)" if loso else "paper (USTC-NVIE subset)")
    ax.set_xticks(x, METHODS, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("error rate %")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
