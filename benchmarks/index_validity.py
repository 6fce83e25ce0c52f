"""Does a bridge index measure languages? Selector comparison, typology, stability and prediction.

Subcommands (each prints `RESULT ...` lines; every figure in docs/results/index-validity.md comes from them):

- `selectors --stats S.npz [--halves A.npz B.npz]`: compares neuron selectors offline on saved pass-1
  statistics (`benchmarks/pass1_stats.py`): always-on share, neurons shared by every language, similarity
  spread, typology ρ, band set sizes (zeros included), and, with the halves, split-half set agreement.
- `typology --index IDX`: Spearman between the index's pair similarity (and Jaccard) and typological
  similarity from lang2vec 1.1.2 (cosine of the URIEL `fam` and `syntax_knn` vectors), over all pairs.
- `stability --index A --other B`: two indexes from disjoint halves of the probes: rank-1 agreement and
  Kendall τ of the bridge ranking per pair, next to what a random ranking gives.
- `prediction --index IDX --accuracies ACC`: accuracies per (pair, bridge) from ACC's `evaluations`
  table (strategy all-bridges), the ranking from IDX's `bridges`; Spearman(probability, accuracy) per pair
  and rank-1 regret, next to a random ranking, always English and the typologically nearest bridge.

Needs the `validity` extra (lang2vec) for typology and the nearest-language baseline.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

from index_builder.evaluation.typology import FEATURES, TypologyError
from index_builder.evaluation.typology import typology as _typology
from index_builder.indexing import bridges, neurons


def typology(langs: Sequence[str]) -> dict[str, dict[tuple[str, str], float]]:
    """lang2vec cosine per unordered pair and feature set; an unknown language stops with one line."""
    try:
        return _typology(langs)
    except TypologyError as err:
        raise SystemExit(f"error: {err}; add it to index_builder/evaluation/typology.py ISO3") from err


def rho(x: dict[tuple[str, str], float | None], y: dict[tuple[str, str], float]) -> float:
    """Spearman ρ over the pairs both define (NaN when either side is constant)."""
    keys = [k for k in y if x.get(k) is not None]
    xs, ys = [x[k] for k in keys], [y[k] for k in keys]
    if len(keys) < 3 or np.std(xs) == 0 or np.std(ys) == 0:
        return float("nan")
    return float(spearmanr(xs, ys).statistic)


# ------------------------------------------------------------------------------------ offline selectors

SelectorFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _selectors() -> dict[str, SelectorFn]:
    def top(rate: float) -> SelectorFn:
        return lambda p, m: np.stack(
            [neurons.top_rate_neurons(a, rate, t) for a, t in zip(p, m, strict=True)]
        )

    def spec(rate: float, floor: float, per_layer: bool) -> SelectorFn:
        return lambda p, _m: neurons.specific_neurons(p, rate, floor, per_layer)

    out: dict[str, SelectorFn] = {
        "top-rate 0.01 (authors)": top(0.01),
        "lape 0.01": lambda p, _m: neurons.lape_neurons(p, 0.01),
        "lape 0.05": lambda p, _m: neurons.lape_neurons(p, 0.05),
    }
    for rate, floor, per_layer in itertools.product((0.01, 0.02, 0.05), (0.05, 0.1), (True, False)):
        out[f"specific {rate} s>={floor} {'per-layer' if per_layer else 'global'}"] = spec(
            rate, floor, per_layer
        )
    return out


def selector_stats(
    p: np.ndarray,
    masks: np.ndarray,
    langs: Sequence[str],
    band: Sequence[int],
    typo: dict[str, dict[tuple[str, str], float]] | None,
    min_set: int,
) -> dict[str, float]:
    """The health statistics of one selector's masks (band set sizes counted with zeros; `cos_std`: spread of
    the authors' overlap cosine). The stored similarity reads all neurons: `similarities` compares it."""
    sizes = masks.sum(axis=(1, 2))
    on = [float((p[i][masks[i]] >= 0.99).mean()) if sizes[i] else 0.0 for i in range(len(langs))]
    shared = int(np.logical_and.reduce(masks, axis=0).sum())
    order = sorted(range(len(langs)), key=lambda i: langs[i])
    cos: dict[tuple[str, str], float | None] = {}
    jac: dict[tuple[str, str], float | None] = {}
    over, spec_sizes, voting_pairs = [], [], 0
    for i, j in itertools.combinations(order, 2):
        key = (langs[i], langs[j])
        o = masks[i] & masks[j]
        cos[key] = neurons.similarity(p[i], p[j], o)
        jac[key] = neurons.jaccard(masks[i], masks[j])
        over += [int(o[layer].sum()) for layer in band]
        pair_votes = False
        for c in range(len(langs)):
            if c in (i, j):
                continue
            sc = neurons.bridge_specific(masks[c], masks[i], masks[j])
            for layer in band:
                n2 = int(sc[layer].sum())
                spec_sizes.append(n2)
                pair_votes |= n2 >= min_set and int(o[layer].sum()) >= min_set
        voting_pairs += pair_votes
    row = {
        "set_min": int(sizes.min()),
        "set_median": float(np.median(sizes)),
        "always_on": float(np.mean(on)),
        "shared_share": shared / max(int(sizes.min()), 1),
        "cos_std": float(np.std([v for v in cos.values() if v is not None] or [np.nan])),
        "band_overlap_median": float(np.median(over)),
        "band_bridge_median": float(np.median(spec_sizes)),
        "pairs_ranked": voting_pairs / len(jac),
    }
    if typo:
        for feature, table in typo.items():
            row[f"rho_jac_{feature}"] = rho(jac, table)
    return row


def cmd_selectors(args: argparse.Namespace) -> None:
    data = np.load(args.stats)
    p, mean_act = data["p"].astype(np.float64), data["mean_activation"].astype(np.float64)
    langs = [str(c) for c in data["langs"]]
    band = bridges.middle_band(p.shape[1], (0.3, 0.7))
    typo = typology(langs)
    halves = [np.load(h) for h in args.halves] if args.halves else []
    for name, fn in _selectors().items():
        masks = fn(p, mean_act)
        row = selector_stats(p, masks, langs, band, typo, args.min_set)
        if halves:
            ma, mb = (fn(h["p"].astype(np.float64), h["mean_activation"].astype(np.float64)) for h in halves)
            row["half_set_jaccard"] = float(
                np.mean([neurons.jaccard(x, y) for x, y in zip(ma, mb, strict=True)])
            )
        print(
            f"RESULT selector {json.dumps(name)} " + " ".join(f"{k}={v:.3f}" for k, v in row.items()),
            flush=True,
        )


def _cos(a: np.ndarray, b: np.ndarray) -> float | None:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b) / (na * nb) if na and nb else None


def cmd_similarities(args: argparse.Namespace) -> None:
    """Candidate pair similarities on saved pass-1 statistics: spread and typology ρ of each."""
    data = np.load(args.stats)
    p = data["p"].astype(np.float64)
    langs = [str(c) for c in data["langs"]]
    band = bridges.middle_band(p.shape[1], (0.3, 0.7))
    typo = typology(langs)
    masks = neurons.specific_neurons(p, args.top_rate, 0.05)
    dev = p - p.mean(axis=0)  # deviation from the all-language mean, (languages, layers, neurons)
    variants: dict[str, Callable[[int, int], float | None]] = {
        "pearson-all (stored)": lambda i, j: neurons.profile_correlation(p[i], p[j]),
        "authors-cosine-overlap": lambda i, j: neurons.similarity(p[i], p[j], masks[i] & masks[j]),
        "centred-cosine-union": lambda i, j: _cos(dev[i][masks[i] | masks[j]], dev[j][masks[i] | masks[j]]),
        "centred-cosine-all": lambda i, j: _cos(dev[i].ravel(), dev[j].ravel()),
        "centred-cosine-band": lambda i, j: _cos(dev[i][band].ravel(), dev[j][band].ravel()),
        "pearson-union": lambda i, j: float(
            np.corrcoef(p[i][masks[i] | masks[j]], p[j][masks[i] | masks[j]])[0, 1]
        ),
        "jaccard": lambda i, j: neurons.jaccard(masks[i], masks[j]),
    }
    order = sorted(range(len(langs)), key=lambda i: langs[i])
    for name, fn in variants.items():
        sims = {(langs[i], langs[j]): fn(i, j) for i, j in itertools.combinations(order, 2)}
        values = [v for v in sims.values() if v is not None]
        print(
            f"RESULT similarity {json.dumps(name)} mean={np.mean(values):.3f} std={np.std(values):.3f} "
            + " ".join(f"rho_{f}={rho(sims, t):.3f}" for f, t in typo.items())
        )


# ------------------------------------------------------------------------------------------- index reads


def _connect(path: Path):
    import duckdb

    if not path.is_file():
        raise SystemExit(f"error: index not found: {path}")
    return duckdb.connect(str(path), read_only=True)


def rankings(path: Path) -> dict[tuple[str, str], dict[str, tuple[float, int]]]:
    """(source, target) → bridge → (probability, rank), both directions as stored."""
    con = _connect(path)
    out: dict[tuple[str, str], dict[str, tuple[float, int]]] = {}
    for s, t, b, prob, rank in con.execute(
        "SELECT source, target, bridge, probability, rank FROM bridges"
    ).fetchall():
        out.setdefault((s, t), {})[b] = (float(prob), int(rank))
    con.close()
    return out


def cmd_typology(args: argparse.Namespace) -> None:
    con = _connect(args.index)
    rows = con.execute("SELECT lang_a, lang_b, jaccard, similarity FROM language_similarity").fetchall()
    langs = [r[0] for r in con.execute("SELECT code FROM languages").fetchall()]
    con.close()
    typo = typology(langs)
    sims = {(a, b): s for a, b, _j, s in rows}
    jacs = {(a, b): j for a, b, j, _s in rows}
    values = np.array([s for s in sims.values() if s is not None])
    print(
        f"RESULT typology index={args.index} pairs={len(rows)} similarity_std={values.std():.4f} "
        + " ".join(
            f"rho_similarity_{f}={rho(sims, t):.3f} rho_jaccard_{f}={rho(jacs, t):.3f}"
            for f, t in typo.items()
        )
    )


def cmd_stability(args: argparse.Namespace) -> None:
    a, b = rankings(args.index), rankings(args.other)
    rng = np.random.default_rng(0)
    pairs = sorted(k for k in a if k in b and k[0] < k[1])
    agree, taus, rand_agree, rand_taus = 0, [], [], []
    for pair in pairs:
        common = sorted(set(a[pair]) & set(b[pair]))
        if len(common) < 2:
            continue
        ra = [a[pair][c][1] for c in common]
        rb = [b[pair][c][1] for c in common]
        agree += int(np.argmin(ra) == np.argmin(rb))
        taus.append(float(kendalltau(ra, rb).statistic))
        rand_agree.append(1 / len(common))
        perm = [float(kendalltau(ra, rng.permutation(ra)).statistic) for _ in range(200)]
        rand_taus.append(float(np.mean(perm)))
    only = len({k for k in a if k[0] < k[1]} ^ {k for k in b if k[0] < k[1]})
    n = len(taus)
    print(
        f"RESULT stability pairs={n} ranked_in_one_only={only} rank1_agreement={agree / max(n, 1):.3f}"
        f" random_rank1_agreement={np.mean(rand_agree) if n else float('nan'):.3f}"
        f" kendall_tau_mean={np.mean(taus) if n else float('nan'):.3f}"
        f" random_kendall_tau={np.mean(rand_taus) if n else float('nan'):.3f}"
    )


def accuracies(path: Path) -> dict[tuple[str, str], dict[str, float]]:
    """(source, target) → bridge → accuracy (%) from `evaluations` (strategy all-bridges): per pair, the run
    that measured the most bridges (the latest among equals), so every bridge of a pair was judged on the
    same words."""
    con = _connect(path)
    rows = con.execute(
        "SELECT source, target, run_id, max(created_at), list(bridge), list(accuracy) FROM evaluations"
        " WHERE strategy = 'all-bridges' AND bridge IS NOT NULL GROUP BY source, target, run_id"
    ).fetchall()
    con.close()
    best: dict[tuple[str, str], tuple] = {}
    for s, t, _run, created, bridges_, accs in rows:
        key = (len(bridges_), created)
        if (s, t) not in best or key > best[(s, t)][0]:
            best[(s, t)] = (key, dict(zip(bridges_, (float(a) for a in accs), strict=True)))
    return {pair: cells for pair, (_key, cells) in best.items()}


def cmd_prediction(args: argparse.Namespace) -> None:
    ranks = rankings(args.index)
    accs = accuracies(args.accuracies)
    langs = sorted({c for pair in accs for c in pair} | {b for v in accs.values() for b in v})
    typo = typology(langs)

    def typo_sim(x: str, y: str) -> float:
        key = tuple(sorted((x, y)))
        return float(np.mean([typo[f][key] for f in FEATURES]))

    rows = {"index": [], "random": [], "english": [], "nearest": []}
    spear, unranked, lines = [], 0, []
    skipped = 0
    for (s, t), acc in sorted(accs.items()):
        cands = sorted(acc)
        if len(cands) < args.min_bridges:  # an oracle over a few measured bridges is no oracle
            skipped += 1
            continue
        best = max(acc.values())
        rows["random"].append(best - float(np.mean(list(acc.values()))))
        if "en" in acc:
            rows["english"].append(best - acc["en"])
        nearest = max(cands, key=lambda c: ((typo_sim(s, c) + typo_sim(t, c)) / 2, c == "en", c))
        rows["nearest"].append(best - acc[nearest])
        ranked = ranks.get((s, t), {})
        common = [c for c in cands if c in ranked]
        if len(common) < 2:
            unranked += 1
            lines.append(f"{s}-{t}: no index ranking; best {max(acc, key=acc.get)} {best:.1f}")
            continue
        top = min(common, key=lambda c: ranked[c][1])
        rows["index"].append(best - acc[top])
        xs, ys = [ranked[c][0] for c in common], [acc[c] for c in common]
        rs = spearmanr(xs, ys).statistic if np.std(xs) > 0 and np.std(ys) > 0 else 0.0
        spear.append(float(rs))
        lines.append(
            f"{s}-{t}: index rank-1 {top} {acc[top]:.1f}, best {max(acc, key=acc.get)} {best:.1f},"
            f" en {acc.get('en', float('nan')):.1f}, nearest {nearest} {acc[nearest]:.1f},"
            f" spearman {spear[-1]:.2f}"
        )
    for line in lines:
        print(line)
    stats = " ".join(f"regret_{k}={np.mean(v) if v else float('nan'):.2f}" for k, v in rows.items())
    print(
        f"RESULT prediction index={args.index} pairs={len(accs)} ranked={len(rows['index'])}"
        f" unranked={unranked} skipped_fewer_than_{args.min_bridges}_bridges={skipped}"
        f" spearman_mean={np.mean(spear) if spear else float('nan'):.2f} {stats}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sel = sub.add_parser("selectors", help="compare selectors on saved pass-1 statistics")
    sel.add_argument("--stats", type=Path, required=True)
    sel.add_argument("--halves", type=Path, nargs=2)
    sel.add_argument("--min-set", type=int, default=5)
    sel.set_defaults(fn=cmd_selectors)
    sims = sub.add_parser("similarities", help="compare pair-similarity definitions on pass-1 statistics")
    sims.add_argument("--stats", type=Path, required=True)
    sims.add_argument("--top-rate", type=float, default=0.05, help="of the specific selector's sets")
    sims.set_defaults(fn=cmd_similarities)
    typ = sub.add_parser("typology")
    typ.add_argument("--index", type=Path, required=True)
    typ.set_defaults(fn=cmd_typology)
    sta = sub.add_parser("stability")
    sta.add_argument("--index", type=Path, required=True)
    sta.add_argument("--other", type=Path, required=True)
    sta.set_defaults(fn=cmd_stability)
    pre = sub.add_parser("prediction")
    pre.add_argument("--index", type=Path, required=True)
    pre.add_argument("--accuracies", type=Path, required=True)
    pre.add_argument(
        "--min-bridges", type=int, default=4, help="pairs with fewer measured bridges are skipped"
    )
    pre.set_defaults(fn=cmd_prediction)
    args = parser.parse_args(argv)
    args.fn(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
