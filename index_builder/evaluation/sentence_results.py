"""What a `--task translate` run measured: per (pair, strategy, bridge) cell, corpus chrF++ and BLEU with
the paired bootstrap interval against direct on the same sentences, and the diagnostics (empty answers,
copies of the source, answers in another language by the proxy's own detector)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bridgex_index.detect import make_detector
from bridgex_index.words import normalise_word

from . import sentence_scoring
from .client import WordAnswer
from .config import Pair
from .results import CellHead
from .tasks import PairTask, bridge_of


@dataclass
class SentenceCell(CellHead):
    """One (pair, strategy, bridge) cell over the pair's sentences; `vs_direct` is empty for direct."""

    scores: dict[str, float]  # metric (chrf++, bleu) → corpus score
    vs_direct: dict[str, sentence_scoring.Comparison]
    diagnostics: sentence_scoring.Diagnostics
    copies: int  # bridge renderings that copied the source (the server's `bridge_copied`)
    calls: int
    seconds: float


def sentence_cells(
    tasks: Sequence[PairTask],
    strategies: Sequence[str],
    answers: Mapping[tuple[Pair, int, str | None], WordAnswer],
    n_boot: int = sentence_scoring.DEFAULT_BOOTSTRAP,
) -> list[SentenceCell]:
    """Cells whose every sentence has an answer, each compared with the pair's direct answers when the
    direct cell is complete too."""
    detect = make_detector({code for task in tasks for code in task.pair})
    cells: list[SentenceCell] = []
    for task in tasks:
        sources = [w.word for w in task.words]
        references = [w.golds[0] for w in task.words]
        said: dict[str, list[WordAnswer]] = {}
        labels: dict[str, tuple[str, str | None]] = {}
        for strategy, arm in task.strategy_arms(strategies):
            results = [answers.get((task.pair, i, arm)) for i in range(len(task.words))]
            if all(r is not None for r in results):
                label = f"{strategy}:{arm}"
                said[label] = [r for r in results if r is not None]
                labels[label] = (strategy, arm)
        direct = next((label for label, (strategy, _arm) in labels.items() if strategy == "direct"), None)
        texts = {label: [r.answer for r in rs] for label, rs in said.items()}
        scored = sentence_scoring.score_strategies(
            sources,
            references,
            texts,
            task.target,
            normalise_word,
            detect,
            baseline=direct or "",
            n_boot=n_boot,
        )
        for row in scored:
            strategy, arm = labels[row.strategy]
            rs = said[row.strategy]
            probability = next((c.probability for c in task.candidates if c.bridge == arm), None)
            cells.append(
                SentenceCell(
                    task.source,
                    task.target,
                    strategy,
                    bridge_of(arm),
                    probability,
                    row.n,
                    row.scores,
                    row.vs_direct,
                    row.diagnostics,
                    sum(r.bridge_copied for r in rs),
                    sum(r.calls for r in rs),
                    sum(r.seconds for r in rs),
                )
            )
    return cells


def cell_lines(cells: Sequence[SentenceCell]) -> list[str]:
    """A plain-text table: per cell chrF++ and BLEU, the chrF++ difference with direct and its 95% interval,
    the diagnostics as percentages and the length ratio (answer / reference characters)."""
    head = (
        f"{'pair':7} {'strategy':12} {'bridge':6} {'n':>4} {'chrF++':>6} {'BLEU':>5} "
        f"{'Δ chrF++ vs direct [95% CI]':>27} {'empty%':>6} {'copy%':>5} {'wrong-lang%':>11} {'len':>4}"
    )
    lines = [head]
    for c in cells:
        vs = c.vs_direct.get(sentence_scoring.CHRF_PP)
        delta = (
            f"{vs.delta:+.1f} [{vs.low:+.1f},{vs.high:+.1f}]{'*' if vs.significant else ' '}" if vs else "-"
        )
        rates = c.diagnostics.rates()
        length = c.diagnostics.length_ratio
        ratio = f"{length:.2f}" if length is not None else "-"
        lines.append(
            f"{c.source}-{c.target:4} {c.strategy:12} {c.bridge or '-':6} {c.n:>4} "
            f"{c.scores[sentence_scoring.CHRF_PP]:>6.1f} {c.scores[sentence_scoring.BLEU_METRIC]:>5.1f} "
            f"{delta:>27} {rates['empty']:>6.1f} {rates['copies']:>5.1f} {rates['wrong_language']:>11.1f} "
            f"{ratio:>4}"
        )
    return lines
