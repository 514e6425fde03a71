"""Look at a report the way a reader does: headless Chromium renders it (screenshot, DOM, images).

Used by the tests (every section present, every image decoded) and to refresh the README's
screenshot::

    python -m affectlens.report.browser demo-out/report.html docs/img/report.png
"""
from __future__ import annotations

import html as _html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from affectlens.errors import AffectlensError

# A private profile and no background traffic: the page must render from the file alone.
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--hide-scrollbars", "--disable-dev-shm-usage")

# Injected into a copy of the page: after `load`, list every <img> that did not decode.
_CHECK_JS = """<script>window.addEventListener('load',function(){
var im=Array.from(document.images),bad=im.filter(function(i){return !(i.complete&&i.naturalWidth>0)});
var d=document.createElement('div');d.id='affectlens-img-check';d.setAttribute('data-total',im.length);
d.textContent=JSON.stringify(bad.map(function(i){return i.alt||i.src.slice(0,40)}));
document.body.appendChild(d);});</script>"""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(args: list[str], html_path: Path, timeout: float) -> str:
    exe = find_chromium()
    if exe is None:
        raise AffectlensError("Chromium not found (install Debian's `chromium` package)")
    with tempfile.TemporaryDirectory(prefix="affectlens-chromium-") as profile:
        cmd = [exe, *_FLAGS, f"--user-data-dir={profile}", *args, html_path.resolve().as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise AffectlensError(f"{html_path}: chromium exited with {done.returncode}: {tail}")
    return done.stdout


def dump_dom(html_path: str | Path, timeout: float = 120) -> str:
    """The DOM after the page's `load` event, serialised as HTML."""
    return _run(["--virtual-time-budget=5000", "--dump-dom"], Path(html_path), timeout)


def screenshot(html_path: str | Path, png_path: str | Path, width: int = 1280, height: int = 2000,
               timeout: float = 120) -> Path:
    """A PNG of the page's first ``width`` × ``height`` pixels."""
    png_path = Path(png_path).resolve()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    _run([f"--screenshot={png_path}", f"--window-size={width},{height}"], Path(html_path), timeout)
    if not png_path.is_file() or png_path.stat().st_size == 0:
        raise AffectlensError(f"{html_path}: chromium wrote no screenshot")
    return png_path


def check_images(html_path: str | Path, timeout: float = 120) -> tuple[int, list[str], str]:
    """Render a copy of the page with a checking script; return (number of <img>, the alt texts
    of those that failed to decode, the rendered DOM)."""
    html_path = Path(html_path)
    page = html_path.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="affectlens-check-") as d:
        probe = Path(d) / html_path.name
        probe.write_text(page.replace("</body>", _CHECK_JS + "</body>", 1), encoding="utf-8")
        dom = dump_dom(probe, timeout)
    m = re.search(r'<div id="affectlens-img-check" data-total="(\d+)">(.*?)</div>', dom, re.DOTALL)
    if m is None:
        raise AffectlensError(f"{html_path}: the image check did not run (page never fired `load`)")

    return int(m.group(1)), json.loads(_html.unescape(m.group(2))), dom


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.exit("usage: python -m affectlens.report.browser REPORT.html SCREENSHOT.png")
    print(screenshot(args[0], args[1]))


if __name__ == "__main__":
    main()
