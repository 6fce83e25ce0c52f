"""The DuckDB index, read once into memory (`BridgeIndex`); requests never touch the file.

Reloading builds a new `BridgeIndex` and the shells swap one reference, so a request sees either the old
or the new index, never a mix.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from bridgex_index import read
from bridgex_index.health import health_from_connection
from bridgex_index.store import (
    IndexReadError,
    distilled,
    open_index,
    provenance,
    route_policy,
    routing_decisions,
)
from bridgex_index.words import copy_key

from .demonstrations import Lexicon
from .plan import CalibratedRoute, DistilledSet, PolicyRoute, clean_example

log = logging.getLogger("bridgex_serve.index")

MAX_WORD_CHARS = 256  # longer queries are never compared with demonstration words (linear cost)

# Demonstrations come from common-noun categories first (CLDR names are mostly proper nouns).
CATEGORY_PREFERENCE = ("unit", "month", "weekday", "day", "currency", "territory", "language")


class IndexLoadError(Exception):
    """The index cannot be used; the message is one line naming the file and the problem."""


@dataclass(frozen=True)
class Language:
    code: str
    prompt_name: str
    english_name: str
    low_resource: bool


@dataclass(frozen=True)
class BridgeChoice:
    bridge: str
    score: float
    probability: float
    rank: int


@dataclass
class BridgeIndex:
    path: str
    languages: dict[str, Language]
    bridges: dict[tuple[str, str], tuple[BridgeChoice, ...]]  # (source, target) → candidates by rank
    lexicon: Lexicon  # probe-split words for gold demonstrations
    decisions: dict[tuple[str, str], CalibratedRoute] = field(default_factory=dict)  # routing_decisions: word
    sentence_decisions: dict[tuple[str, str], CalibratedRoute] = field(default_factory=dict)  # translate
    # route_policy: task ("word" | "translate") → (source, target) → the policy's route
    policies: dict[str, dict[tuple[str, str], PolicyRoute]] = field(default_factory=dict)
    # distilled_demonstrations: (source, target, task) → the pair's distilled set
    distilled_sets: dict[tuple[str, str, str], DistilledSet] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)
    loaded_at: float = field(default_factory=time.time)
    _demo_cache: dict = field(default_factory=dict, repr=False)
    _from_source: dict = field(default_factory=dict, repr=False)

    # -- lookups used by plan.plan_request ---------------------------------------------------------------
    def has_language(self, code: str) -> bool:
        return code in self.languages

    def prompt_name(self, code: str) -> str:
        return self.languages[code].prompt_name

    def english_name(self, code: str) -> str:
        return self.languages[code].english_name

    def language_codes(self) -> list[str]:
        return sorted(self.languages)

    def low_resource(self) -> frozenset[str]:
        return frozenset(c for c, lang in self.languages.items() if lang.low_resource)

    def best_bridge(self, source: str, target: str) -> tuple[str, float] | None:
        """Rank-1 bridge of the pair; for source == target (chat in one language) the bridge with the
        highest mean probability over the source's pairs."""
        if source == target:
            if source not in self._from_source:
                totals: dict[str, list[float]] = {}
                for (s, _t), choices in self.bridges.items():
                    if s == source:
                        for c in choices:
                            totals.setdefault(c.bridge, []).append(c.probability)
                best = max(totals.items(), key=lambda kv: (sum(kv[1]) / len(kv[1]), kv[0]), default=None)
                self._from_source[source] = (best[0], sum(best[1]) / len(best[1])) if best else None
            return self._from_source[source]
        choices = self.bridges.get((source, target))
        if not choices:
            return None
        return choices[0].bridge, choices[0].probability

    def bridge_probability(self, source: str, target: str, bridge: str) -> float | None:
        """The index's selection probability of `bridge` for the pair, None when it did not rank it."""
        choices = self.bridges.get((source, target), ())
        return next((c.probability for c in choices if c.bridge == bridge), None)

    def decision(self, source: str, target: str, task: str = "word") -> CalibratedRoute | None:
        """The stored decision of the pair for `task`: `word` decisions route single words, `translate`
        decisions route sentences, batch translations, chat and qa (no fallback to the word decision)."""
        table = self.decisions if task == "word" else self.sentence_decisions
        return table.get((source, target))

    def policy_route(self, source: str, target: str, task: str = "word") -> PolicyRoute | None:
        """The route policy's route of the pair for `task` (None: no `calibrate` wrote a policy)."""
        return self.policies.get(task, {}).get((source, target))

    def distilled(self, source: str, target: str, task: str) -> DistilledSet | None:
        """The pair's distilled demonstrations for `task` (None: `bridgex-index distill` made none)."""
        return self.distilled_sets.get((source, target, task))

    def distilled_pairs(self, task: str) -> list[tuple[str, str]]:
        """The pairs with a distilled set for `task`, sorted."""
        return sorted((s, t) for s, t, k in self.distilled_sets if k == task)

    def demonstrations(
        self, langs: tuple[str, ...], k: int, exclude: str | None = None
    ) -> tuple[tuple[str, ...], ...]:
        """k gold word tuples aligned across `langs` (`demonstrations.Lexicon`), always the same ones for a
        language tuple (a stable prompt prefix for the prefix cache); a tuple whose source word is `exclude`
        (the query) is skipped."""
        key = (tuple(langs), k)
        candidates = self._demo_cache.get(key)
        if candidates is None:
            candidates = self.lexicon.select(langs, k + 1)
            self._demo_cache[key] = candidates
        if not exclude or len(exclude) > MAX_WORD_CHARS:  # a sentence is no demonstration's word
            return candidates[:k]
        excluded = copy_key(exclude)
        return tuple(c for c in candidates if copy_key(c[0]) != excluded)[:k]

    def pairs(self) -> list[dict]:
        """Ranked bridges per pair, and the calibrated decision (`decision`) where there is one."""
        out = []
        policy_pairs = {pair for rows in self.policies.values() for pair in rows}
        distilled_pairs = {(s, t) for s, t, _task in self.distilled_sets}
        for s, t in sorted(
            set(self.bridges)
            | set(self.decisions)
            | set(self.sentence_decisions)
            | policy_pairs
            | distilled_pairs
        ):
            pair: dict = {
                "source": s,
                "target": t,
                "bridges": [
                    {"bridge": c.bridge, "probability": c.probability} for c in self.bridges.get((s, t), ())
                ],
            }
            if (s, t) in self.decisions:
                pair["decision"] = self.decisions[(s, t)].summary()
            if (s, t) in self.sentence_decisions:
                pair["translate_decision"] = self.sentence_decisions[(s, t)].summary()
            for task, key in (("word", "policy"), ("translate", "translate_policy")):
                if (s, t) in self.policies.get(task, {}):
                    pair[key] = self.policies[task][(s, t)].summary()
            found = {
                task: self.distilled_sets[(s, t, task)].summary()
                for task in ("word", "translate")
                if (s, t, task) in self.distilled_sets
            }
            if found:
                pair["distilled"] = found
            out.append(pair)
        return out


def load_index(path: str | Path) -> BridgeIndex:
    """Read the whole index into memory. Raises `IndexLoadError` with a one-line message.

    The file is validated by the contract's one validator (`bridgex_index.store.open_index`: tables and
    schema version) and read with its shared queries (`bridgex_index.read`)."""
    path = Path(path)
    try:
        con = open_index(path)
    except IndexReadError as exc:
        raise IndexLoadError(_one_line(exc)) from None
    try:
        return _read(con, path)
    except IndexLoadError:
        raise
    except Exception as exc:
        raise IndexLoadError(f"{path} is not a valid BridgeX index: {_one_line(exc)}") from None
    finally:
        con.close()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def _read(con, path: Path) -> BridgeIndex:
    languages = {row.code: Language(*row) for row in read.languages(con)}
    if not languages:
        raise IndexLoadError(f"{path} has no languages")
    bridges = {
        pair: tuple(BridgeChoice(r.bridge, r.score, r.probability, r.rank) for r in rows)
        for pair, rows in read.ranked_by_pair(read.bridges(con)).items()
    }
    # Every dictionary entry: probe words make demonstrations, test words are reserved for evaluation.
    lexicon = Lexicon(read.dictionary_entries(con), CATEGORY_PREFERENCE)
    decisions = _decisions(con, path, languages, "word")
    sentence_decisions = _decisions(con, path, languages, "translate")
    policies = {task: _policy(con, path, languages, task) for task in ("word", "translate")}
    distilled_sets = _distilled(con, path, languages)
    report = health_from_connection(con)
    if report.verdict == "degenerate":
        log.warning(
            "index %s is degenerate, its bridge ranking is likely noise: %s (bridgex-index health %s)",
            path,
            "; ".join(report.reasons),
            path,
        )
    return BridgeIndex(
        path=str(path),
        languages=languages,
        bridges=bridges,
        lexicon=lexicon,
        decisions=decisions,
        sentence_decisions=sentence_decisions,
        policies=policies,
        distilled_sets=distilled_sets,
        provenance=provenance(con),
    )


def _check_route(path: Path, table: str, languages: dict[str, Language], s: str, t: str, route: str) -> None:
    """A stored route the server cannot follow (an unknown pair, or a bridge that is not one of the index's
    other languages) stops the load."""
    if s not in languages or t not in languages or s == t:
        raise IndexLoadError(f"{path}: {table} has a row for an unknown pair {s}→{t}")
    if route != "direct" and (route not in languages or route in (s, t)):
        raise IndexLoadError(
            f"{path}: {table} says {s}→{t} goes through {route!r}, which is not a bridge "
            f"language of this index ('direct' or one of {', '.join(sorted(languages))})"
        )


def _policy(con, path: Path, languages: dict[str, Language], task: str) -> dict[tuple[str, str], PolicyRoute]:
    """The `task` rows of the optional `route_policy` table; a route the server cannot follow stops the
    load."""
    out: dict[tuple[str, str], PolicyRoute] = {}
    for (s, t), row in route_policy(con, task).items():
        route = row["route"]
        _check_route(path, "route_policy", languages, s, t, route)
        out[(s, t)] = PolicyRoute(
            s,
            t,
            route,
            row["origin"],
            float(row["expected_gain"]),
            float(row["sd"]),
            float(row["p_gain"]),
            float(row["p_loss"]),
            int(row["n"]),
        )
    return out


def _distilled(con, path: Path, languages: dict[str, Language]) -> dict[tuple[str, str, str], DistilledSet]:
    """The optional `distilled_demonstrations` table, one set per (source, target, task); a row the server
    could not put in a prompt (an unknown pair or task, an empty side, a target with `"`) stops the load."""
    out: dict[tuple[str, str, str], DistilledSet] = {}
    for (s, t, task), rows in distilled(con).items():
        _check_route(path, "distilled_demonstrations", languages, s, t, "direct")
        if task not in ("word", "translate"):
            raise IndexLoadError(f"{path}: distilled_demonstrations has task {task!r} (word or translate)")
        try:
            examples = tuple(clean_example(r["source_text"], r["target_text"]) for r in rows)
        except ValueError as exc:
            raise IndexLoadError(f"{path}: distilled_demonstrations for {s}→{t} ({task}): {exc}") from None
        first = rows[0]
        created = first["created_at"]
        out[(s, t, task)] = DistilledSet(
            examples,
            first["route"],
            first["model"],
            first["text_source"],
            created.isoformat(timespec="seconds") if created is not None else None,
        )
    return out


def _decisions(
    con, path: Path, languages: dict[str, Language], task: str
) -> dict[tuple[str, str], CalibratedRoute]:
    """The `task` rows of the optional `routing_decisions` table; a row the server cannot follow stops the
    load."""
    out: dict[tuple[str, str], CalibratedRoute] = {}
    for (s, t), row in routing_decisions(con, task).items():
        decision = row["decision"]
        _check_route(path, "routing_decisions", languages, s, t, decision)
        numbers = {
            k: None if row[k] is None else float(row[k])
            for k in ("direct_accuracy", "bridge_accuracy", "gain", "ci_low", "ci_high", "p_value")
        }
        n = None if row["n"] is None else int(row["n"])
        out[(s, t)] = CalibratedRoute(s, t, decision, n=n, test=row["test"], **numbers)
    return out
