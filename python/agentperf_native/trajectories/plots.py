"""Histogram PNGs of a trajectory set (``inspect --plot DIR``), drawn with matplotlib's Agg backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .model import Conversation
from .stats import series

def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


_LABELS = {"input_tokens": ("input tokens per call", True), "output_tokens": ("output tokens per call", True),
           "tool_delay_s": ("tool delay between calls (s)", False), "turns_per_session": ("turns per session", False)}


def write_histograms(conversations: list[Conversation], out_dir: str | Path, tokenizer: str = "cl100k_base",
                     title: str = "") -> list[Path]:
    """Writes one PNG per distribution into ``out_dir``; returns their paths."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        raise RuntimeError("--plot needs matplotlib; pip install matplotlib") from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, values in series(conversations, tokenizer).items():
        label, log = _LABELS[name]
        a = np.asarray(values, dtype=np.float64)
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        if a.size:
            positive = a[a > 0]
            if log and positive.size and positive.max() / max(positive.min(), 1e-9) > 50:
                bins = np.logspace(np.log10(positive.min()), np.log10(positive.max()), 50)
                ax.set_xscale("log")
                ax.hist(positive, bins=bins, color="#3b6ea5")
            else:
                ax.hist(a, bins=50, color="#3b6ea5")
            ax.axvline(float(np.median(a)), color="#c0392b", linestyle="--", label=f"median {_num(float(np.median(a)))}")
            ax.axvline(float(a.mean()), color="#27ae60", linestyle=":", label=f"mean {_num(float(a.mean()))}")
            ax.legend()
        ax.set_xlabel(label)
        ax.set_ylabel("count")
        ax.set_title(f"{title} — {label} (n={a.size})" if title else f"{label} (n={a.size})")
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths
