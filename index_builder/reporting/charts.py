"""PNG plots of an index: the language-similarity heatmap and the per-layer histogram of overlap neurons."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bridgex_index.read import languages
from bridgex_index.store import records


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _pair_grid(langs: list[str], rows: list[dict], key: str) -> np.ndarray:
    pos = {c: i for i, c in enumerate(langs)}
    grid = np.full((len(langs), len(langs)), np.nan)  # (languages, languages)
    np.fill_diagonal(grid, 1.0)
    for r in rows:
        if r[key] is not None:
            grid[pos[r["lang_a"]], pos[r["lang_b"]]] = grid[pos[r["lang_b"]], pos[r["lang_a"]]] = r[key]
    return grid


def similarity_heatmap(con, out: Path) -> Path:
    """Two heatmaps over the index's languages: Jaccard of the language-neuron sets, and Similarity(a, b)
    (`language_similarity.similarity`, see docs/method-notes.md), each with its own colour range."""
    plt = _pyplot()
    langs = [lang.code for lang in languages(con)]
    rows = records(con, "SELECT lang_a, lang_b, jaccard, similarity FROM language_similarity")
    off_diagonal = ~np.eye(len(langs), dtype=bool)
    size = 1.2 + 0.45 * len(langs)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1.5, size))
    for ax, key, title in zip(
        axes,
        ("jaccard", "similarity"),
        ("Jaccard of language neurons", "Similarity"),
        strict=True,
    ):
        grid = _pair_grid(langs, rows, key)
        finite = grid[np.isfinite(grid) & off_diagonal]
        lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        if hi - lo < 1e-9:  # e.g. every overlap neuron fires on every token of both languages
            title += f" (all {hi:.6f})"
            lo, hi = lo - 1e-6, hi + 1e-6
        shown = np.where(off_diagonal, grid, np.nan)  # the diagonal (1.0) would flatten the colour range
        image = ax.imshow(shown, cmap="viridis", vmin=lo, vmax=hi)
        ax.set_xticks(range(len(langs)), langs)
        ax.set_yticks(range(len(langs)), langs)
        ax.set_title(title)
        fig.colorbar(image, ax=ax, shrink=0.8, format="%.4g")
    fig.tight_layout()
    path = out / "similarity.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def overlap_layer_histogram(con, out: Path) -> Path:
    """Per layer, overlap neurons summed over all language pairs (and the middle band shaded)."""
    import json

    plt = _pyplot()
    rows = records(con, "SELECT layer, sum(n_overlap) AS n FROM overlap_layers GROUP BY layer ORDER BY layer")
    band_row = con.execute("SELECT value FROM provenance WHERE key = 'middle_band_layers'").fetchone()
    band = json.loads(band_row[0]) if band_row else []
    fig, ax = plt.subplots(figsize=(8, 3.5))
    if band:
        ax.axvspan(min(band) - 0.5, max(band) + 0.5, color="0.9", label="middle band")
    ax.bar([r["layer"] for r in rows], [r["n"] for r in rows], color="tab:blue")
    ax.set_xlabel("layer")
    ax.set_ylabel("overlap neurons (all pairs)")
    ax.set_title("Where languages share neurons")
    if band:
        ax.legend(loc="upper left")
    fig.tight_layout()
    path = out / "overlap_layers.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
