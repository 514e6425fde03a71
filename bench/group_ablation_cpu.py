"""Table 2 at CPU size on synthetic data only (VGAF is not available here).

"Real" clips: a split-cue synthetic set (faces tell Positive from the rest, the sound tells Negative
from the rest), so audio-only and video-only can reach at most 0.667 and fusion 1.0. "Synthetic"
clips (the paper's §4.3 set): full cues, faces and sound of the clip's own class, mixed in at the
paper's 30 %. All 64 px with 3–4 faces, the tiny hybrid-ViT model, 5 frames. Rows that train on the
synthetic set only are evaluated on the split-cue validation set, as the paper evaluates on VGAF.

    .venv/bin/python bench/group_ablation_cpu.py --out bench-out/group_ablation
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench-out" / "group_ablation")
    ap.add_argument("--train", type=int, default=240)
    ap.add_argument("--val", type=int, default=60)
    ap.add_argument("--synthetic", type=int, default=240)
    ap.add_argument("--epochs", type=int, default=6)
    a = ap.parse_args()
    from affectlens.group.ablation import ablation
    from affectlens.group.recipe import load_config
    from affectlens.group.synth import SynthSpec, generate_dataset

    t0 = time.time()
    spec = SynthSpec(width=64, height=64, fps=10, cues="split", min_faces=3, max_faces=4)
    generate_dataset(a.out / "data" / "train", a.train, spec, seed=1, progress=False)
    generate_dataset(a.out / "data" / "val", a.val, spec, seed=2, progress=False)
    generate_dataset(a.out / "data" / "synthetic", a.synthetic, dataclasses.replace(spec, cues="full"),
                     seed=3, prefix="s", progress=False)
    cfg = load_config(REPO / "configs" / "group_tiny.yaml", epochs=a.epochs)
    ablation(cfg, a.out / "data" / "train", a.out / "data" / "val", a.out / "data" / "synthetic", a.out / "runs",
             frames=(5,), progress=False, log=lambda s: print(s, flush=True))
    print(f"wall {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
