"""Self-contained HTML reports: one file, images embedded as base64 PNG/JPEG, CSS inline, no JS.

A report is built section by section and written atomically::

    from affectlens.report.html import Report

    r = Report("group — fusion, synthetic VGAF")
    r.section("Test set")
    r.kv({"accuracy": 0.71, "macro-F1": 0.69})
    r.metrics(classification_report_dict)          # per-class table + confusion matrix + bars
    r.curves({"train_loss": [...], "val_acc": [...]})
    r.section("Anonymization")
    r.images_grid([(before, "before"), (after, "after")], columns=2)
    r.write("out/report.html")

Every piece of text is HTML-escaped; the page references no URL (it opens from a USB stick or an
e-mail attachment). Rooms' ``eval --report PATH`` call :func:`write_eval_report` in one line.
"""
from __future__ import annotations

import base64
import contextlib
import html
import io
import math
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from affectlens.errors import DataError
from affectlens.files import atomic_path
from affectlens.report import plots

__all__ = ["Report", "image_data_uri", "write_eval_report"]


_CSS = """
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
main{max-width:1100px;margin:0 auto;padding:24px 28px 60px}
header{border-bottom:3px solid #3b6ea5;margin-bottom:18px}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:20px;margin:34px 0 10px;color:#24476b}
h3{font-size:16px;margin:18px 0 8px}.sub{color:#5b6673;margin:0 0 12px}
nav{font-size:13px;margin:8px 0 14px}nav a{margin-right:14px;color:#3b6ea5;text-decoration:none}
section{background:#fff;border:1px solid #e1e5ea;border-radius:8px;padding:4px 20px 16px;margin:16px 0}
table{border-collapse:collapse;margin:8px 0 14px;font-size:14px}
th,td{border-bottom:1px solid #e4e7eb;padding:4px 12px;text-align:left}
th{background:#eef2f7}caption{text-align:left;font-size:13px;color:#5b6673;padding:2px 0 4px}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{font-weight:600;background:#f0f7ee}
figure{margin:10px 14px 10px 0;display:inline-block;vertical-align:top}
figure img{max-width:100%;border:1px solid #e1e5ea;border-radius:4px;background:#fff}
figcaption{font-size:13px;color:#5b6673;margin-top:4px}
.row{display:flex;gap:0 18px;align-items:flex-start}.row>div{flex:0 1 auto;min-width:0}
.row figure{display:block;margin-right:0}.row img{max-width:100%;height:auto}.grid{display:grid;gap:10px;margin:10px 0}.grid figure{margin:0}
.grid img{width:100%;image-rendering:auto}
code{background:#eef1f4;padding:0 4px;border-radius:3px}
footer{margin-top:30px;font-size:12px;color:#8a94a0}
"""


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _slug(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, k = base, 2
    while slug in taken:
        slug, k = f"{base}-{k}", k + 1
    taken.add(slug)
    return slug


def _inline_md(text: str) -> str:
    """Escape, then allow a tiny Markdown subset: `code`, **bold**, *italic*."""
    t = _esc(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)
    return re.sub(r"(?<![*\w])\*([^*]+)\*(?!\w)", r"<i>\1</i>", t)


def _array_to_png(arr: np.ndarray, max_side: int | None) -> bytes:
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):  # (C, H, W) → (H, W, C)
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.dtype != np.uint8:  # floats in [0, 1] (or [0, 255] when the maximum says so)
        a = np.asarray(a, dtype=np.float64)
        scale = 255.0 if a.size and np.nanmax(a) <= 1.0 else 1.0
        a = np.clip(np.nan_to_num(a) * scale, 0, 255).astype(np.uint8)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ValueError(f"an image must be (H, W), (H, W, 3|4) or (3, H, W); got {a.shape}")
    img = Image.fromarray(a)
    if max_side and max(img.size) > max_side:
        img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _sniff_mime(data: bytes, where: str) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise DataError(where, "not a PNG, JPEG, GIF or WebP image")


def image_data_uri(image: str | Path | bytes | np.ndarray, max_side: int | None = None) -> str:
    """A ``data:`` URI for a PNG/JPEG file, raw image bytes, or an RGB/grey array (thumbnailed to
    ``max_side`` pixels when given; files and bytes are embedded as they are)."""
    if isinstance(image, np.ndarray):
        data, where = _array_to_png(image, max_side), "<array>"
    elif isinstance(image, (bytes, bytearray)):
        data, where = bytes(image), "<bytes>"
    else:
        path = Path(image)
        if not path.is_file():
            raise DataError(path, "image not found")
        data, where = path.read_bytes(), str(path)
    mime = _sniff_mime(data, where)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))


def _cell(value: Any, floatfmt: str) -> str:
    if isinstance(value, (bool, np.bool_)):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, (int, np.integer)):
        return f'<td class="n">{int(value)}</td>'
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return f'<td class="n">{"–" if math.isnan(v) else format(v, floatfmt)}</td>'
    return f"<td>{_esc('' if value is None else value)}</td>"


class Report:
    """Build a report section by section; every method returns ``self`` so calls can chain."""

    def __init__(self, title: str, subtitle: str | None = None):
        self.title = title
        self.subtitle = subtitle
        self._sections: list[tuple[str, str, list[str]]] = []  # (anchor, title, html parts)
        self._anchors: set[str] = set()
        self._tmp = tempfile.TemporaryDirectory(prefix="affectlens-report-")
        self._row: list[str] | None = None

    # --- structure -------------------------------------------------------------------------
    def section(self, title: str) -> Report:
        """Start a new section (an ``<h2>`` with an anchor listed in the page's contents)."""
        self._sections.append((_slug(title, self._anchors), title, []))
        return self

    def _add(self, part: str) -> Report:
        if self._row is not None:
            self._row.append(part)
            return self
        if not self._sections:
            self._sections.append(("", "", []))  # content before the first section
        self._sections[-1][2].append(part)
        return self

    @contextlib.contextmanager
    def row(self) -> Iterator[Report]:
        """Blocks added inside ``with report.row():`` sit side by side (images shrink to fit)."""
        outer, self._row = self._row, []
        try:
            yield self
        finally:
            parts, self._row = self._row, outer
            self._add(f'<div class="row">{"".join(f"<div>{p}</div>" for p in parts)}</div>')

    def heading(self, text: str) -> Report:
        return self._add(f"<h3>{_esc(text)}</h3>")

    def text(self, text: str) -> Report:
        """Paragraphs separated by blank lines; escaped, with `code`, **bold** and *italic*."""
        paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
        return self._add("".join(f"<p>{_inline_md(p)}</p>" for p in paras))

    # --- tables ----------------------------------------------------------------------------
    def table(self, rows: Iterable[Sequence[Any] | Mapping[str, Any]], headers: Sequence[str] | None = None,
              caption: str | None = None, floatfmt: str = ".3f", highlight: int | None = None) -> Report:
        """A table from row sequences (with ``headers``) or dicts (headers = their keys, in order).

        ``highlight`` marks one row index (e.g. the best ablation) in bold.
        """
        rows = list(rows)
        if rows and isinstance(rows[0], Mapping):
            headers = list(headers or dict.fromkeys(k for r in rows for k in r))
            rows = [[r.get(h) for h in headers] for r in rows]
        right, best = ' class="n"', ' class="best"'  # numeric columns align right, headers too
        numeric = [bool(rows) and all(_is_number(r[j]) for r in rows if j < len(r)) for j in range(len(headers or []))]
        head = "".join(f"<th{right if n else ''}>{_esc(h)}</th>" for h, n in zip(headers or [], numeric))
        body = "".join(f"<tr{best if i == highlight else ''}>{''.join(_cell(v, floatfmt) for v in r)}</tr>"
                       for i, r in enumerate(rows))
        cap = f"<caption>{_esc(caption)}</caption>" if caption else ""
        return self._add(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def kv(self, mapping: Mapping[str, Any], floatfmt: str = ".4f") -> Report:
        """A two-column table of names and values (scalars; nested values are shown as text)."""
        return self.table([[k, v] for k, v in mapping.items()], ["metric", "value"], floatfmt=floatfmt)

    # --- images ----------------------------------------------------------------------------
    def image(self, image: str | Path | bytes | np.ndarray, caption: str | None = None,
              width: int | None = None, max_side: int | None = None) -> Report:
        """Embed one image (PNG/JPEG path, bytes, or an RGB array)."""
        uri = image_data_uri(image, max_side=max_side)
        style = f' style="width:{int(width)}px"' if width else ""
        cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
        alt = _esc(caption or "figure")
        return self._add(f'<figure><img src="{uri}" alt="{alt}"{style}>{cap}</figure>')

    def images_grid(self, items: Sequence[tuple[Any, str] | Any], columns: int = 4,
                    max_side: int = 320) -> Report:
        """Thumbnails in a grid, row-major; ``items`` are ``(image, caption)`` or bare images.

        For before/after pairs pass ``[(before, "clip 1 before"), (after, "clip 1 after"), ...]``
        with an even ``columns`` (or use :meth:`before_after`).
        """
        cells = []
        for item in items:
            img, cap = item if isinstance(item, tuple) else (item, "")
            uri = image_data_uri(img, max_side=max_side)
            figcap = f"<figcaption>{_esc(cap)}</figcaption>" if cap else ""
            cells.append(f'<figure><img src="{uri}" alt="{_esc(cap or "thumbnail")}">{figcap}</figure>')
        style = f"grid-template-columns:repeat({max(1, int(columns))},minmax(0,1fr))"
        return self._add(f'<div class="grid" style="{style}">{"".join(cells)}</div>')

    def before_after(self, pairs: Sequence[tuple[Any, Any, str]], pairs_per_row: int = 2,
                     max_side: int = 320) -> Report:
        """(before, after, label) thumbnails side by side, e.g. a frame and its anonymized version."""
        items = [x for b, a, label in pairs for x in ((b, f"{label} — before"), (a, f"{label} — after"))]
        return self.images_grid(items, columns=2 * pairs_per_row, max_side=max_side)

    def _plot(self, fn, *args, **kwargs) -> Path:
        """Render a ``report.plots`` function into the builder's scratch folder."""
        n = len(list(Path(self._tmp.name).iterdir()))
        return fn(*args, path=Path(self._tmp.name) / f"plot{n}.png", **kwargs)

    # --- result blocks ---------------------------------------------------------------------
    def metrics(self, report: Mapping[str, Any], title: str | None = None) -> Report:
        """Summary, per-class table, confusion matrix and P/R/F1 bars from a
        ``metrics.classification.classification_report`` dict."""
        names = list(report.get("class_names") or report["per_class"])
        if title:
            self.heading(title)
        rows = [[n, *(report["per_class"][n][m] for m in ("precision", "recall", "f1", "support"))]
                for n in names]
        with self.row():
            self.kv({k: v for k, v in report.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
            self.table(rows, ["class", "precision", "recall", "F1", "support"])
        with self.row():
            if "confusion_matrix" in report:
                cm = np.asarray(report["confusion_matrix"])
                self.image(self._plot(plots.confusion_matrix_png, cm, names), "confusion matrix (counts; rows = true)")
                self.image(self._plot(plots.confusion_matrix_png, cm, names, normalize=True,
                                      title="Confusion matrix (row-normalised)"), "confusion matrix (recall per row)")
            self.image(self._plot(plots.per_class_png, report), "precision / recall / F1 per class")
        return self

    def curves(self, history: Mapping[str, Sequence[float]], caption: str = "training curves",
               xlabel: str = "epoch") -> Report:
        """Training curves; losses and [0, 1] scores go on separate plots so neither is squashed."""
        history = {k: list(v) for k, v in history.items() if len(v)}
        losses = {k: v for k, v in history.items() if "loss" in k}
        others = {k: v for k, v in history.items() if k not in losses}
        with self.row():
            for part, name in ((losses, "losses"), (others, "scores")):
                if part:
                    self.image(self._plot(plots.curves_png, part, title=f"Training curves — {name}",
                                          xlabel=xlabel), f"{caption} ({name})")
        return self

    def timeline(self, times: Sequence[float], probabilities, class_names: Sequence[str],
                 caption: str = "class probabilities over time", title: str = "Timeline") -> Report:
        """A stacked probability timeline (e.g. group emotion over a video)."""
        return self.image(self._plot(plots.timeline_png, times, probabilities, class_names, title=title), caption)

    # --- output ----------------------------------------------------------------------------
    def to_html(self) -> str:
        nav = "".join(f'<a href="#{a}">{_esc(t)}</a>' for a, t, _ in self._sections if a)
        body = []
        for anchor, title, parts in self._sections:
            head = f'<h2 id="{anchor}">{_esc(title)}</h2>' if anchor else ""
            body.append(f"<section>{head}{''.join(parts)}</section>")
        sub = f'<p class="sub">{_esc(self.subtitle)}</p>' if self.subtitle else ""
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width,initial-scale=1">'
                f"<title>{_esc(self.title)}</title><style>{_CSS}</style></head><body><main>"
                f"<header><h1>{_esc(self.title)}</h1>{sub}<nav>{nav}</nav></header>"
                f"{''.join(body)}<footer>written by affectlens on {stamp}</footer></main></body></html>\n")

    def write(self, path: str | Path) -> Path:
        """Write the page atomically and return its path."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(self.to_html(), encoding="utf-8")
        return path


def write_eval_report(path: str | Path, report: Mapping[str, Any], class_names: Sequence[str] | None = None,
                      history: Mapping[str, Sequence[float]] | None = None, title: str = "Evaluation",
                      notes: str | None = None, tables: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                      images: Sequence[tuple[Any, str]] = ()) -> Path:
    """One line for a room's ``eval --report PATH``.

    ``report`` is a ``classification_report`` dict (per-class table and confusion matrix are
    drawn) or any dict of scalar metrics (e.g. GAP / mAP / Hit@1 of a multi-label model), shown
    as a table. ``history`` adds training curves, ``tables`` adds named tables of dict rows (e.g.
    an ablation), ``notes`` a paragraph (command line, checkpoint, data), ``images`` figures the
    room already drew as ``(PNG path | bytes | array, caption)`` (e.g. an error-bar chart).
    """
    r = Report(title)
    r.section("Results")
    if notes:
        r.text(notes)
    if "per_class" in report:
        rep = dict(report)
        if class_names is not None:
            rep["class_names"] = list(class_names)
        r.metrics(rep)
    else:
        r.kv({k: v for k, v in report.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)})
    for name, rows in (tables or {}).items():
        r.section(name).table(rows)
    if images:
        r.section("Figures")
        for image, caption in images:
            r.image(image, caption)
    if history:
        r.section("Training").curves(history)
    return r.write(path)
