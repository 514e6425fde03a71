"""Training and evaluation (paper 001): the seven nets and the two -SVM ensembles, evaluated
subject-independently (k groups of subjects, default 10; or leave-one-subject-out), and trained on
every pair for deployment (``train_all``).

Error rates are averaged over folds **and** over several seeds; the paper's footnote explains why
picking the best seed on the test set reports a number no user would get. We print the mean, the
standard deviation over folds (of the seed-averaged fold errors) and over seeds (of the
fold-averaged errors).

Every net is one run of the training engine (:func:`affectlens.training.engine.fit`) in its own
folder, ``<out>/runs/seed<s>/fold<k>/<net>/``; a finished fold keeps its nine predictions in
``fold.json`` beside them, so an interrupted cross-validation resumes fold by fold and net by net.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Dict, List, Literal, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from affectlens.config import load_config
from affectlens.errors import DataError
from affectlens.files import atomic_path, write_json
from affectlens.report.console import progress, track
from affectlens.report.plots import lines_png
from affectlens.spontaneity.data import load_pairs, read_manifest
from affectlens.spontaneity.ensemble import ENSEMBLES, LinearSVMEnsemble, concat_features
from affectlens.spontaneity.model import SpontaneityNet, SpontaneityNetConfig, table_configs
from affectlens.training import load_checkpoint, save_checkpoint
from affectlens.training.engine import FitResult, TrainModule, fit, loader
from affectlens.training.hardware import Hardware

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

    size: Literal["tiny", "small", "paper"] = "small"  # net widths (see model.py)
    epochs: int = 20
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    svm_c: float = 1.0
    threads: int = 1


@dataclass(frozen=True)
class CVConfig(TrainConfig):
    """A flat experiment file (configs/spontaneity_*.yaml): the protocol beside TrainConfig's fields.

    It extends TrainConfig so that one flat YAML holds both and :func:`affectlens.config.load_config`
    checks every key; the nets only ever see :attr:`train`."""

    protocol: Literal["kfold", "loso"] = "kfold"
    folds: int = 10
    seeds: int = 3
    first_seed: int = 0

    @property
    def train(self) -> TrainConfig:
        return TrainConfig(**{f.name: getattr(self, f.name) for f in fields(TrainConfig)})


def load_cv_config(path: str | Path | None = None, **overrides) -> CVConfig:
    """Defaults ← the YAML file (if any) ← overrides that are not None; a bad key or value is one line."""
    return load_config(CVConfig, path, **overrides)


def is_global_zero() -> bool:
    """Whether this process is rank 0: under DDP every rank runs the whole command, and only rank 0
    writes results and prints them (Lightning sets the rank from the launcher's environment)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


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


@dataclass(frozen=True)
class NetRecipe:
    """What one net's run folder is made with. It names the training pairs by their fingerprint,
    so the engine refuses to continue a folder made from another split or manifest."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int
    data: str


def fingerprint(*tensors: torch.Tensor) -> str:
    """A short hash of the tensors' bytes (milliseconds even for the full USTC-NVIE set)."""
    h = hashlib.sha1()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class PairSet(torch.utils.data.Dataset):
    """Onset and apex ``(N, 1, 44, 44)`` and labels ``(N,)`` served a whole batch per call
    (``__getitems__``): a CV fits hundreds of tiny nets, and collating single samples would cost
    more than the nets' own steps."""

    def __init__(self, onset: torch.Tensor, apex: torch.Tensor, labels: torch.Tensor):
        self.onset, self.apex, self.labels = onset, apex, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, idx: List[int]) -> dict:
        i = torch.as_tensor(idx, dtype=torch.long)
        return {"onset": self.onset[i], "apex": self.apex[i], "label": self.labels[i]}


def as_batch(batch: dict) -> dict:
    """The DataLoader's collate step for :class:`PairSet`, whose batches come ready."""
    return batch


class SpontaneityModule(TrainModule):
    """One net of Table 1: cross-entropy and Adam with weight decay. There is no validation split:
    a fold's test subjects are what is reported, so the net of the last epoch is the one kept."""

    def __init__(self, config: SpontaneityNetConfig, recipe: NetRecipe):
        super().__init__(config, recipe, seed=recipe.seed)
        self.model = SpontaneityNet(config)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self.model(batch["onset"], batch["apex"])  # (B, 2)
        loss = F.cross_entropy(logits, batch["label"])
        self.record("train_loss", loss, len(logits))
        return loss

    def configure_optimizers(self):
        r = self.train_config
        return torch.optim.Adam(self.model.parameters(), lr=r.lr, weight_decay=r.weight_decay)


def train_net(config: SpontaneityNetConfig, onset: torch.Tensor, apex: torch.Tensor, labels: torch.Tensor,
              tc: TrainConfig, seed: int, out: str | Path, *, hardware: Hardware | None = None,
              resume: bool = True, progress: bool | None = None) -> Tuple[SpontaneityNet, FitResult]:
    """Fit one net on (N, 1, 44, 44) tensors into the run folder ``out`` through the engine (a
    finished run there is not trained again); returns the last epoch's net in eval mode and the result."""
    recipe = NetRecipe(tc.epochs, tc.batch_size, tc.lr, tc.weight_decay, int(seed), fingerprint(onset, apex, labels))
    module = SpontaneityModule(config, recipe)
    pairs = loader(PairSet(onset, apex, labels), tc.batch_size, shuffle=True, seed=int(seed), collate_fn=as_batch)
    result = fit(module, pairs, None, out=out, epochs=tc.epochs, hardware=hardware, resume=resume, progress=progress)
    return module.model.eval(), result


@torch.no_grad()
def net_outputs(net: SpontaneityNet, onset: torch.Tensor, apex: torch.Tensor, batch: int = 256):
    """(P(spontaneous) (N,), FC2 features (N, D)) in eval mode, computed on the net's device."""
    net.eval()
    device = next(net.parameters()).device
    probs, feats = [], []
    for i in range(0, len(onset), batch):
        f = net.forward_features(onset[i:i + batch].to(device), apex[i:i + batch].to(device))
        probs.append(torch.softmax(net.forward_head(f), 1)[:, 1].cpu())
        feats.append(f.cpu())
    return torch.cat(probs).numpy(), torch.cat(feats).numpy()


@contextlib.contextmanager
def _quiet():
    """Hide the engine's start-up and per-epoch lines (and Lightning's warnings) inside a CV: they
    would be thousands of lines; the fold progress bar says how far the CV is."""
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def fit_fold(onset: torch.Tensor, apex: torch.Tensor, labels: torch.Tensor, train: np.ndarray,
             test: np.ndarray, tc: TrainConfig, seed: int, out: Path, hardware: Hardware | None = None,
             resume: bool = True) -> Dict[str, np.ndarray]:
    """Train the seven nets (one engine run each, ``out/<net>/``) and the two SVMs on ``train``;
    predicted labels on ``test`` for all nine methods.

    The predictions are kept in ``out/fold.json`` with the settings that made them and reused when
    those match (a finished fold is not trained again). Any other change trains the fold anew:
    the engine then continues nets whose folders differ only in ``epochs`` and refuses the rest."""
    tr, te = torch.from_numpy(train), torch.from_numpy(test)
    settings = {**asdict(tc), "seed": int(seed), "train": fingerprint(onset[tr], apex[tr], labels[tr]),
                "test": fingerprint(onset[te], apex[te], labels[te])}
    settings.pop("threads")
    record = out / "fold.json"
    if resume and record.is_file():
        saved = json.loads(record.read_text(encoding="utf-8"))
        if saved.get("settings") == settings:
            return {m: np.asarray(p, np.int64) for m, p in saved["preds"].items()}
    preds, feats_tr, feats_te = {}, {}, {}
    for config in table_configs(tc.size):
        with _quiet():
            net, _ = train_net(config, onset[tr], apex[tr], labels[tr], tc, seed, out / config.name,
                               hardware=hardware, resume=resume, progress=False)
        p_te, feats_te[config.name] = net_outputs(net, onset[te], apex[te])
        _, feats_tr[config.name] = net_outputs(net, onset[tr], apex[tr])
        preds[config.name] = (p_te > 0.5).astype(np.int64)
    y_tr = labels[tr].numpy()
    for name, members in ENSEMBLES.items():
        svm = LinearSVMEnsemble(C=tc.svm_c).fit(concat_features(feats_tr, members), y_tr, seed)
        preds[name] = svm.predict(concat_features(feats_te, members))
    if is_global_zero():
        write_json(record, {"settings": settings, "preds": {m: p.tolist() for m, p in preds.items()}})
    return preds


@contextlib.contextmanager
def _run_root(out: str | Path | None):
    """The CV's run folder, or a temporary one for a run that keeps nothing (the demo)."""
    if out is not None:
        yield Path(out)
        return
    with tempfile.TemporaryDirectory(prefix="affectlens-cv-") as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def _fold_progress(enabled: bool, total: int, label: str):
    """A progress bar over the folds (rank 0, on a terminal) whose ``tick()`` advances it."""
    with progress(enabled=enabled and is_global_zero()) as bar:
        task = bar.add_task(f"{label}: folds done", total=total)
        yield lambda: bar.advance(task)


def run_cv(onset: np.ndarray, apex: np.ndarray, labels: np.ndarray, subjects: np.ndarray,
           protocol: str = "kfold", folds: int = 10, seeds: Sequence[int] = (0, 1, 2),
           tc: TrainConfig = TrainConfig(), split_seed: int = 0, progress: bool = False,
           on_fold: Optional[Callable[[int, int, Dict[str, float]], None]] = None,
           out: str | Path | None = None, hardware: Hardware | None = None, resume: bool = True,
           train_subjects: int = 0) -> dict:
    """Subject-independent cross-validation of all nine methods, one engine run per net, fold and
    seed under ``out/runs/`` (a temporary folder when ``out`` is None). ``train_subjects`` > 0
    trains each fold on that many of its training subjects only (a seeded choice per fold; the
    test side is unchanged): the paper's Fig. 4 varies it.

    Returns a JSON-able dict: ``errors[method][seed][fold]`` (fractions), a ``summary`` per method
    (error % mean, std over folds, std over seeds, pooled error %) and the run's settings.
    ``on_fold(seed, fold, {method: error})`` is called after every fold (logging from scripts).
    """
    torch.set_num_threads(max(1, min(tc.threads, 2)))
    splits = subject_folds(subjects, protocol, folds, split_seed)
    if train_subjects:
        splits = [(_fewer_subjects(train, subjects, train_subjects, split_seed + fi), test)
                  for fi, (train, test) in enumerate(splits)]
    o, a, y = to_tensor(onset), to_tensor(apex), torch.from_numpy(np.asarray(labels, np.int64))
    errors = {m: np.zeros((len(seeds), len(splits))) for m in METHODS}
    wrong = {m: 0 for m in METHODS}
    with _run_root(out) as root, _fold_progress(progress, len(seeds) * len(splits), f"{protocol} CV") as tick:
        for si, seed in enumerate(seeds):
            for fi, (train, test) in enumerate(splits):
                preds = fit_fold(o, a, y, train, test, tc, seed + 1000 * fi,
                                 root / "runs" / f"seed{seed}" / f"fold{fi:02d}", hardware, resume)
                for m in METHODS:
                    miss = preds[m] != labels[test]
                    errors[m][si, fi] = miss.mean()
                    wrong[m] += int(miss.sum())
                tick()
                if on_fold is not None:
                    on_fold(seed, fi, {m: float(errors[m][si, fi]) for m in METHODS})
    n_eval = len(seeds) * len(labels)
    return {"protocol": protocol, "folds": len(splits), "seeds": list(seeds), "samples": int(len(labels)),
            "subjects": int(len(np.unique(subjects))), "train_subjects": int(train_subjects), "train": asdict(tc),
            "errors": {m: e.tolist() for m, e in errors.items()},
            "summary": {m: summarise(errors[m], wrong[m] / n_eval) for m in METHODS}}


def _fewer_subjects(train: np.ndarray, subjects: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The rows of ``train`` whose subject is among ``n`` of its subjects (seeded; all when fewer)."""
    have = np.unique(subjects[train])
    if n >= len(have):
        return train
    keep = np.random.default_rng(seed).choice(have, n, replace=False)
    return train[np.isin(subjects[train], keep)]


def learning_curve(manifest: str | Path, out: Path, counts: Sequence[int], protocol: str = "kfold", folds: int = 10,
                   seeds: Sequence[int] = (0,), tc: TrainConfig = TrainConfig(), progress: bool = True,
                   hardware=None, resume: bool = True) -> dict:
    """Fig. 4: the CV error of every method against the number of training subjects per fold.
    One ``cross_validate``-style run per count under ``out/subjects<n>/`` (resumable); writes
    ``curve.json`` and ``fig4.png`` (rank 0)."""
    onset, apex, labels, subjects = load_dataset(manifest, progress and is_global_zero())
    runs = {int(n): run_cv(onset, apex, labels, subjects, protocol, folds, seeds, tc, progress=progress,
                           out=Path(out) / f"subjects{int(n)}", hardware=hardware, resume=resume, train_subjects=int(n))
            for n in counts}
    curve = {m: [runs[n]["summary"][m]["mean"] for n in sorted(runs)] for m in METHODS}
    result = {"manifest": str(manifest), "protocol": protocol, "counts": sorted(runs), "error_percent": curve}
    if is_global_zero():
        write_json(Path(out) / "curve.json", result)
        lines_png(sorted(runs), curve, Path(out) / "fig4.png", xlabel="training subjects per fold",
                  ylabel="error rate (%)", title=f"Error vs training subjects ({protocol}, {folds} folds)")
    return result


def summarise(err: np.ndarray, pooled: float) -> dict:
    """err: (seeds, folds) fractions → percentages."""
    return {"mean": 100 * float(err.mean()),
            "std_folds": 100 * float(err.mean(0).std(ddof=1)) if err.shape[1] > 1 else 0.0,
            "std_seeds": 100 * float(err.mean(1).std(ddof=1)) if err.shape[0] > 1 else 0.0,
            "pooled": 100 * float(pooled)}


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


# ------------------------------------------------------------------------ from a manifest
def load_dataset(manifest: str | Path, progress: bool = False):
    """Manifest → (onset, apex, labels, subjects) arrays of 44 × 44 crops."""
    samples = read_manifest(manifest)
    if not progress:
        return load_pairs(samples)

    it = iter(track(range(len(samples)), "reading pairs"))
    return load_pairs(samples, progress=lambda: next(it, None))


def cross_validate(manifest: str | Path, out: Optional[Path], protocol: str = "kfold", folds: int = 10,
                   seeds: Sequence[int] = (0, 1, 2), tc: TrainConfig = TrainConfig(), progress: bool = True,
                   on_fold=None, hardware=None, resume: bool = True) -> dict:
    """Read, cross-validate all nine methods (the nets' run folders under ``out/runs/``), write
    ``results.json`` and ``errors.png`` into ``out`` (rank 0 only)."""
    onset, apex, labels, subjects = load_dataset(manifest, progress and is_global_zero())
    if len(np.unique(labels)) < 2:
        raise DataError(manifest, "needs both posed and spontaneous samples")
    result = run_cv(onset, apex, labels, subjects, protocol, folds, seeds, tc, progress=progress, on_fold=on_fold,
                    out=out, hardware=hardware, resume=resume)
    result["manifest"] = str(manifest)
    if out is not None and is_global_zero():
        Path(out).mkdir(parents=True, exist_ok=True)
        write_json(Path(out) / "results.json", result)
        error_bars_png(result, Path(out) / "errors.png")
    return result


def train_all(manifest: str | Path, out: str | Path, tc: TrainConfig = TrainConfig(), seed: int = 0,
              resume: bool = True, progress: bool = True, hardware=None) -> List[Path]:
    """Fit the seven nets and both SVMs on every pair of the manifest; one model file per method.

    Each net is an engine run in ``out/runs/<net name>/`` (resumed when interrupted; a finished one
    is not trained again) whose final weights become ``out/<net name>.pt``; ``out/<ensemble>.pt``
    holds the SVM and the names of its three member nets. Files are written by rank 0 only.
    """
    torch.set_num_threads(max(1, min(tc.threads, 2)))
    out = Path(out)
    onset, apex, labels, _ = load_dataset(manifest, progress and is_global_zero())
    o, a, y = to_tensor(onset), to_tensor(apex), torch.from_numpy(labels)
    feats, written = {}, []
    for config in table_configs(tc.size):
        net, res = train_net(config, o, a, y, tc, seed, out / "runs" / config.name, hardware=hardware, resume=resume)
        _, feats[config.name] = net_outputs(net, o, a)
        written.append(out / f"{config.name}.pt")
        if is_global_zero():  # the run's last epoch as a weights-only file
            run = load_checkpoint(res.last_path)
            save_checkpoint(written[-1], net, config, train=run["train"], epoch=run["epoch"], history=run["history"])
    for name, members in ENSEMBLES.items():
        svm = LinearSVMEnsemble(C=tc.svm_c, members=members).fit(concat_features(feats, members), labels, seed)
        written.append(out / f"{name}.pt")
        if is_global_zero():  # an SVM has no net weights: an empty state_dict, the SVM in ``extra``
            save_checkpoint(written[-1], nn.Module(), {"method": name}, train=tc, svm=svm.state())
    return written
