"""What an evaluation run shows: the terminal table, the Markdown report and the bar chart.

`table`, `summary_lines` and `markdown` are pure text functions of the scoring summaries; `bar_chart` and
`write_report` are the only functions that touch files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..evaluation.scoring import Overall, PairSummary

CHART = "accuracy.png"
REPORT = "report.md"
ARROW = "→"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}"


def _rho(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}"


def _rows(pairs: Sequence[PairSummary], overall: Overall) -> list[list[str]]:
    rows = []
    for p in pairs:
        oracle = p.oracle
        rows.append(
            [
                f"{p.source}{ARROW}{p.target}",
                str(p.n),
                str(p.shots),
                _pct(p.direct),
                _pct(p.english),
                f"{_pct(p.bridgex)} ({p.chosen or 'direct'})" if p.bridgex is not None else _pct(p.bridgex),
                f"{_pct(oracle.accuracy)} ({oracle.bridge if p.oracle_decided else 'tie'})"
                if oracle
                else "–",
                _pct(p.candidate_mean),
                _rho(p.rho),
            ]
        )
    rows.append(
        [
            "mean",
            str(sum(p.n for p in pairs)),
            "",
            _pct(overall.direct),
            _pct(overall.english),
            _pct(overall.bridgex),
            _pct(overall.oracle),
            _pct(overall.candidate_mean),
            _rho(overall.mean_rho),
        ]
    )
    return rows


HEADER = ["pair", "n", "shots", "direct", "english", "bridgex (bridge)", "oracle (bridge)", "all mean", "rho"]


def table(pairs: Sequence[PairSummary], overall: Overall) -> str:
    """A fixed-width table of P@1 accuracy (%) per pair and strategy, with the means."""
    rows = [HEADER, *_rows(pairs, overall)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = []
    for k, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
        if k == 0 or k == len(rows) - 2:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


Gains = Mapping[str, tuple[float, float, float, int]]


def _interval(gains: Gains | None, other: str) -> str:
    if not gains or other not in gains:
        return ""
    _mean, low, high, n = gains[other]
    return f"; 95% paired-bootstrap interval over {n} words [{low:+.2f}, {high:+.2f}]"


def summary_lines(overall: Overall, gains: Gains | None = None) -> list[str]:
    """The headline numbers in sentences: gains (with bootstrap intervals when given), oracle agreement,
    rank correlation."""
    lines = [
        f"BridgeX bridge vs direct zero-bridge: {_signed(overall.gain_over_direct)} points "
        f"(mean over {overall.pairs} pairs{_interval(gains, 'direct')})",
        f"BridgeX bridge vs English pivot: {_signed(overall.gain_over_english)} points "
        f"(pairs without English on either side{_interval(gains, 'english')})",
    ]
    if overall.oracle_known:
        oracles = ", ".join(f"{b} ×{n}" for b, n in overall.oracle_bridges.items())
        lines.append(
            f"chosen bridge is the oracle best in {overall.chosen_is_oracle} of {overall.oracle_known} pairs "
            f"(ties count as best); oracle-best bridges: {oracles}"
        )
    if overall.rho_defined:
        lines.append(
            f"Spearman rho (selection probability vs measured accuracy): mean {_rho(overall.mean_rho)} over "
            f"{overall.rho_defined} pairs with a defined rho"
        )
    if overall.chosen_ranks:
        ranks = ", ".join(map(str, overall.chosen_ranks))
        lines.append(f"measured rank of the chosen bridge among the candidates (1 = best), per pair: {ranks}")
    if overall.unranked:
        lines.append(
            f"{overall.unranked} of {overall.pairs} pairs have no bridge ranking in the index: BridgeX "
            "routes them directly, so `bridgex` there is the direct route (gain 0, counted in the means)"
        )
    undecided = overall.candidate_pairs - overall.oracle_known
    if undecided:
        lines.append(f"{undecided} pairs have no oracle best (every candidate scored the same)")
    if overall.candidate_pairs and not overall.rho_defined:
        lines.append("Spearman rho: undefined in every pair (too few candidates or constant accuracy)")
    return lines


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "right") -> str:
    sep = ["---"] + [("---:" if align == "right" else "---")] * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def candidate_table(pairs: Sequence[PairSummary]) -> str:
    """Pairs × candidate bridges: accuracy, with the index's rank in brackets; the oracle in bold."""
    bridges = sorted({c.bridge for p in pairs for c in p.candidates})
    rows = []
    for p in pairs:
        by = {c.bridge: c for c in p.candidates}
        best = p.oracle.accuracy if p.oracle else None
        cells = []
        for b in bridges:
            c = by.get(b)
            if c is None:
                cells.append("")
                continue
            text = f"{c.accuracy:.1f} ({c.rank})"
            top = best is not None and c.accuracy == best and p.oracle_decided
            cells.append(f"**{text}**" if top else text)
        rows.append([f"{p.source}{ARROW}{p.target}", *cells])
    return _md_table(["pair", *bridges], rows)


def copy_table(pairs: Sequence[PairSummary]) -> str:
    """Per bridge: the share of bridge renderings that merely copied the source word (mean over pairs)."""
    rates: dict[str, list[float]] = {}
    for p in pairs:
        for c in p.candidates:
            if c.copy_rate is not None:
                rates.setdefault(c.bridge, []).append(c.copy_rate)
    if not rates:
        return ""
    bridges = sorted(rates)
    row = [f"{sum(rates[b]) / len(rates[b]):.0f}" for b in bridges]
    return _md_table(["", *bridges], [["copies %", *row]])


def category_table(breakdown: Mapping[str, Mapping[str, tuple[int, int]]]) -> str:
    """Category × strategy: accuracy (%) with the number of answers, pooled over pairs."""
    strategies = [
        s for s in ("direct", "english", "bridgex", "all-bridges") if any(s in b for b in breakdown.values())
    ]
    rows = []
    for category, by in breakdown.items():
        n_words = by.get("direct", by.get(strategies[0], (0, 0)))[1] if strategies else 0
        cells = []
        for s in strategies:
            hits, n = by.get(s, (0, 0))
            cells.append(f"{100.0 * hits / n:.1f}" if n else "–")
        rows.append([category, str(n_words), *cells])
    return _md_table(["category", "words", *strategies], rows)


def markdown(
    pairs: Sequence[PairSummary],
    overall: Overall,
    meta: Mapping[str, str],
    command: str,
    chart: str | None = CHART,
    categories: Mapping[str, Mapping[str, tuple[int, int]]] | None = None,
    gains: Gains | None = None,
) -> str:
    """The whole report: command, setup, the accuracy table, the summary and the per-bridge detail."""
    parts = [
        f"# BLI evaluation: {meta.get('model', '?')} ({meta.get('mode', '?')} mode)",
        "",
        "Command:",
        "",
        "```bash",
        command,
        "```",
        "",
        _md_table(["", "value"], [[k, str(v)] for k, v in meta.items()], align="left"),
        "",
        "## P@1 accuracy (%)",
        "",
        "`bridgex` is the index's rank-1 bridge (`direct` where the index ranks none: its route there), "
        "`oracle` the candidate measured best, `all mean` the mean "
        "over every candidate bridge, `rho` Spearman's rank correlation between the index's selection "
        "probabilities and the measured accuracies of the candidates.",
        "",
        _md_table(HEADER, _rows(pairs, overall)),
        "",
        "## Summary",
        "",
        *[f"- {line}" for line in summary_lines(overall, gains)],
        "",
    ]
    if chart:
        parts += [f"![P@1 accuracy per pair and strategy]({chart})", ""]
    return "\n".join(parts + _detail(pairs, categories))


def _detail(
    pairs: Sequence[PairSummary], categories: Mapping[str, Mapping[str, tuple[int, int]]] | None
) -> list[str]:
    """The report's detail sections: by word category, every candidate bridge, how often bridges copied."""
    parts: list[str] = []
    if categories and len(categories) > 1:
        parts += [
            "## By word category",
            "",
            "Accuracy (%) pooled over pairs; `all-bridges` pools every candidate bridge's answers.",
            "",
            category_table(categories),
            "",
        ]
    if any(p.candidates for p in pairs):
        parts += [
            "## Every candidate bridge",
            "",
            "Accuracy (%) with the index's rank in brackets; the best of each pair in bold.",
            "",
            candidate_table(pairs),
            "",
        ]
        copies = copy_table(pairs)
        if copies:
            parts += [
                "How often the model's bridge word was only a copy of the source word (%, mean over pairs):",
                "",
                copies,
                "",
            ]
    return parts


def bar_chart(pairs: Sequence[PairSummary], overall: Overall, path: Path, title: str) -> Path:
    """Grouped bars per pair (and the mean): direct, English pivot, the chosen bridge, the oracle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [f"{p.source}{ARROW}{p.target}" for p in pairs] + ["mean"]
    oracle = [p.oracle.accuracy if p.oracle else None for p in pairs]
    series = [
        ("direct", [p.direct for p in pairs] + [overall.direct], "#9e9e9e"),
        ("English pivot", [p.english for p in pairs] + [overall.english], "#64b5f6"),
        ("BridgeX bridge", [p.bridgex for p in pairs] + [overall.bridgex], "#e65100"),
        ("oracle bridge", [*oracle, overall.oracle], "#2e7d32"),
    ]
    series = [s for s in series if any(v is not None for v in s[1])]
    codes = {
        "BridgeX bridge": [p.chosen for p in pairs],
        "oracle bridge": [p.oracle.bridge if p.oracle and p.oracle_decided else None for p in pairs],
    }
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) + 2), 4.2), dpi=120)
    for k, (name, values, color) in enumerate(series):
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(x + (k - (len(series) - 1) / 2) * width, heights, width, label=name, color=color)
        if name in codes:
            for bar, code in zip(bars, [*codes[name], None], strict=True):
                if code:
                    ax.annotate(
                        code,
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center",
                        va="bottom",
                        fontsize=6,
                    )
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("P@1 accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncols=len(series), loc="upper left")
    top = max([v for _n, vs, _c in series for v in vs if v is not None] + [1.0])
    ax.set_ylim(0, top * 1.25 + 1)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(
    out: Path,
    pairs: Sequence[PairSummary],
    overall: Overall,
    meta: Mapping[str, str],
    command: str,
    categories: Mapping[str, Mapping[str, tuple[int, int]]] | None = None,
    gains: Gains | None = None,
) -> tuple[Path, Path]:
    """Write `report.md` and `accuracy.png` into `out` (created if needed); returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    title = f"BLI P@1: {meta.get('model', '?')}, {meta.get('mode', '?')} mode, {len(pairs)} pairs"
    chart = bar_chart(pairs, overall, out / CHART, title)
    report = out / REPORT
    report.write_text(
        markdown(pairs, overall, meta, command, chart.name, categories, gains), encoding="utf-8"
    )
    return report, chart


def write_sentence_report(out: Path, lines: Sequence[str], meta: Mapping[str, str], command: str) -> Path:
    """Write a `--task translate` run's `report.md` (its settings, the command, the per-cell table)."""
    out.mkdir(parents=True, exist_ok=True)
    report = out / REPORT
    head = [f"# Sentence translation: {meta.get('model', '?')}, {meta.get('mode', '?')} mode", ""]
    head += [f"- **{key}**: {value}" for key, value in meta.items()]
    body = ["", "Reproduce:", "", "```", command, "```", "", "```", *lines, "```", ""]
    notes = [
        "Corpus chrF++ and BLEU (sacrebleu); Δ is chrF++ minus direct on the same sentences with its 95% "
        "paired-bootstrap interval (* : the interval excludes 0). empty/copy/wrong-lang: % of answers "
        "that are empty, copy the source, or are detected in another language than the target; len: "
        "characters of all answers / characters of all references.",
        "",
    ]
    report.write_text("\n".join(head + body + notes), encoding="utf-8")
    return report
