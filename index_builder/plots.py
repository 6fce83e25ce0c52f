"""PNG plots of an index: the language-similarity heatmap and the per-layer histogram of overlap neurons."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .store import records


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def similarity_heatmap(con, out: Path) -> Path:
    """Heatmap of Similarity(a, b) (cosine on the overlap neurons) over the index's languages."""
    plt = _pyplot()
    langs = [r["code"] for r in records(con, "SELECT code FROM languages ORDER BY code")]
    pos = {c: i for i, c in enumerate(langs)}
    grid = np.full((len(langs), len(langs)), np.nan)  # (languages, languages)
    np.fill_diagonal(grid, 1.0)
    for r in records(con, "SELECT lang_a, lang_b, similarity FROM language_similarity"):
        if r["similarity"] is not None:
            grid[pos[r["lang_a"]], pos[r["lang_b"]]] = grid[pos[r["lang_b"]], pos[r["lang_a"]]] = r[
                "similarity"
            ]
    finite = grid[np.isfinite(grid) & ~np.eye(len(langs), dtype=bool)]
    fig, ax = plt.subplots(figsize=(1 + 0.55 * len(langs), 0.8 + 0.5 * len(langs)))
    image = ax.imshow(grid, cmap="viridis", vmin=finite.min() if finite.size else 0, vmax=1.0)
    ax.set_xticks(range(len(langs)), langs)
    ax.set_yticks(range(len(langs)), langs)
    ax.set_title("Language similarity on overlap neurons")
    fig.colorbar(image, ax=ax, shrink=0.8)
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
