"""Charts for the README: srbench MP/s per backend and precision, or a training run's
validation curve.

    python benchmarks/plot.py benchmarks/results/srbench-<machine>.json docs/srbench.png
    python benchmarks/plot.py curve RUN/val.csv docs/models/default-val.png "title" [SCALE]

Needs matplotlib (``pip install matplotlib``); not part of the test run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(src: str, dst: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc = json.loads(Path(src).read_text())
    rows = [r for r in doc["rows"] if r["status"] == "ok"]
    labels = [f"{r['backend']}\n{r['precision']}" for r in rows]
    values = [r["mp_per_s"] for r in rows]
    m = doc["machine"]
    s = doc.get("settings", {})
    fig, ax = plt.subplots(figsize=(8, 4), dpi=110)
    bars = ax.bar(labels, values, color=["#4C72B0" if r["precision"] == "fp32" else "#DD8452"
                                         for r in rows])
    for bar, r in zip(bars, rows, strict=True):
        ax.annotate(f"{r['mp_per_s']:.2f}\n{r['parity_db'] if isinstance(r['parity_db'], str) else round(r['parity_db'], 1)} dB",  # noqa: E501
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                    va="bottom", fontsize=7)
    ax.set_ylabel("output megapixels / s")
    gpu = m.get("gpu", "no GPU")
    ax.set_title(f"srbench {Path(s.get('engine', '')).name}, tile {s.get('tile')}, batch "
                 f"{s.get('batch')}: {m['cpu']} ({m['cores']} cores), {gpu}, "
                 f"{doc.get('date', '')[:10]}", fontsize=8)
    ax.margins(y=0.25)
    fig.tight_layout()
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dst)


BICUBIC_SET5 = {2: 33.67, 4: 28.43}  # Y PSNR measured here, standard protocol


def curve(src: str, dst: str, title: str = "", scale: str = "4") -> None:
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(src) as f:
        rows = list(csv.DictReader(f))
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    stages = sorted({r.get("stage") or "1" for r in rows}, key=int)
    for stage in stages:  # an optional "stage" column: one line per continued run
        part = [r for r in rows if (r.get("stage") or "1") == stage]
        ax.plot([int(r["step"]) for r in part], [float(r["psnr"]) for r in part], marker="o",
                label=f"stage {stage}" if len(stages) > 1 else "validation")
    base = BICUBIC_SET5.get(int(scale))
    if base is not None and min(float(r["psnr"]) for r in rows) - base < 1.5:
        ax.axhline(base, color="grey", linestyle="--", label=f"bicubic {base}")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"Set5 x{scale} PSNR (Y, dB)")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dst)


if __name__ == "__main__":
    if sys.argv[1] == "curve":
        curve(*sys.argv[2:6])
    else:
        main(*sys.argv[1:3])
