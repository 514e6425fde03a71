"""The house rules that hold by construction: one training loop, one checkpoint format."""
from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "affectlens"


def _sources(exclude: str):
    return [p for p in SRC.rglob("*.py") if exclude not in p.relative_to(SRC).parts]


def test_no_backward_outside_the_training_engine():
    offenders = [f"{p.relative_to(SRC)}:{i}" for p in _sources("training")
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if re.search(r"\.backward\(", line)]
    assert not offenders, f"hand-written training steps outside training/: {offenders}"


def test_checkpoints_are_written_only_through_training_checkpoint():
    offenders = [f"{p.relative_to(SRC)}:{i}" for p in _sources("training")
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if re.search(r"\btorch\.save\(", line)]
    assert not offenders, f"raw torch.save outside training/: {offenders}"


def _module_name(path: Path) -> str:
    parts = ("affectlens",) + path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """affectlens modules ``path`` imports anywhere (top level or inside a function), leaving out
    ``if TYPE_CHECKING:`` blocks, which never run."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING" for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m in modules}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_anywhere():
    paths = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = {m: _imports(p, set(paths)) - {m} for m, p in paths.items()}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the checker works
    assert not _cycles(graph), f"modules that import each other: {_cycles(graph)}"


# Packages a module outside the CLI may import inside a function: heavy or optional ones that only
# one feature needs (docs/architecture.md, "Imports"); torch where every CLI would load it at start-up.
LAZY_OK = {"matplotlib", "sklearn", "scipy", "librosa", "timm", "lightning", "ray", "dlib", "gensim", "onnx",
           "onnxruntime", "h5py", "safetensors", "torchvision", "pytorch_msssim", "skimage"}
LAZY_TORCH_OK = {"training/hardware.py", "training/checkpoint.py", "training/seed.py", "metrics/multilabel.py"}
# Modules that import Lightning at their top: recipes import them where they train, so that loading,
# evaluating and predicting do not import Lightning (and what it pulls in; tests/group/test_privacy.py).
LAZY_AFFECTLENS_OK = {"affectlens.training.engine", "affectlens.group.train_module", "affectlens.videotag.train_module"}


def test_imports_sit_at_the_top_outside_cli_modules():
    offenders = []
    for p in SRC.rglob("*.py"):
        rel = p.relative_to(SRC).as_posix()
        if p.name in ("cli.py", "research_cli.py", "__init__.py", "__main__.py"):
            continue
        for fn in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in LAZY_OK and not (top == "torch" and rel in LAZY_TORCH_OK) \
                            and name not in LAZY_AFFECTLENS_OK:
                        offenders.append(f"{rel}:{node.lineno} {name}")
    assert not offenders, f"imports inside functions (move them to the top of the module): {sorted(set(offenders))}"
