"""`bridgex-index route`: the route the server takes for a pair (the one rule of `bridgex_index.routes`,
read from the same tables), where it came from, its expected gain, and with `--explain` the route policy's
fitted prior and what it predicts for each candidate of the pair."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import fails_cleanly

UNITS = {"word": "P@1 points", "translate": "chrF++ points"}


@click.command(name="route")
@click.argument("index", type=click.Path(path_type=Path))
@click.option("--source", required=True, help="Source language (ISO 639-1).")
@click.option("--target", required=True, help="Target language (ISO 639-1).")
@click.option(
    "--task",
    type=click.Choice(["word", "translate"]),
    default="word",
    show_default=True,
    help="word: a single word; translate: a sentence (also what chat and qa follow).",
)
@click.option(
    "--uncalibrated",
    type=click.Choice(["policy", "hsic", "direct"]),
    default="policy",
    show_default=True,
    help="The server's --uncalibrated setting to answer for.",
)
@click.option(
    "--distilled",
    type=click.Choice(["auto", "off"]),
    default="auto",
    show_default=True,
    help="The server's --distilled setting to answer for.",
)
@click.option("--json", "as_json", is_flag=True, help="A JSON object instead of text.")
@click.option("--explain", is_flag=True, help="Also the fitted prior and each candidate's prediction.")
@fails_cleanly
def route_cmd(
    index: Path,
    source: str,
    target: str,
    task: str,
    uncalibrated: str,
    distilled: str,
    as_json: bool,
    explain: bool,
) -> None:
    """Which route `bridgex-serve` takes for SOURCE → TARGET (a bridge or direct), from where (calibrated,
    evidence, prior, hsic, default) and with what expected gain over direct; `distilled` when the server
    answers the pair's sentences in one call with its distilled demonstrations."""
    answer = route_answer(index, source, target, task, uncalibrated, explain, distilled)
    if as_json:
        click.echo(json.dumps(answer, ensure_ascii=False, indent=1))
        return
    for line in route_lines(answer):
        click.echo(line)


def route_answer(
    index: Path,
    source: str,
    target: str,
    task: str,
    uncalibrated: str,
    explain: bool,
    distilled_setting: str = "auto",
) -> dict:
    """Everything the command prints, as one dict."""
    from bridgex_index import read
    from bridgex_index.routes import served_route, serves_distilled
    from bridgex_index.store import (
        distilled,
        open_index,
        route_policy,
        route_policy_model,
        routing_decisions,
    )

    from ..indexing.config import BuildError

    con = open_index(index)
    try:
        langs = {row.code: row for row in read.languages(con)}
        for flag, code in (("--source", source), ("--target", target)):
            if code not in langs:
                raise BuildError(f"{flag} {code!r} is not in this index (languages: {', '.join(langs)})")
        if source == target:
            raise BuildError(f"--source and --target are both {source!r}")
        decision = routing_decisions(con, task).get((source, target))
        policy = route_policy(con, task).get((source, target))
        ranked = read.bridges(con, source, target, top=1)
        model = route_policy_model(con, task)
        has_distilled = (source, target, task) in distilled(con)
    finally:
        con.close()
    out: dict = {"source": source, "target": target, "task": task, "uncalibrated": uncalibrated}
    if not (langs[source].low_resource or langs[target].low_resource):
        out |= {"route": "direct", "decision_source": None, "passthrough": True,
                "reason": "pair is not low-resource: passed through unchanged"}  # fmt: skip
        return out
    served = served_route(
        source,
        target,
        decision=decision["decision"] if decision else None,
        policy=policy,
        rank1=ranked[0].bridge if ranked else None,
        uncalibrated=uncalibrated,
        distilled=has_distilled and serves_distilled(distilled_setting, task),
    )
    out |= {
        "route": "distilled" if served.distilled else served.bridge or "direct",
        "decision_source": served.source,
        "passthrough": not served.ranked,
        "reason": served.reason,
        "expected_gain": _expected_gain(served.source, decision, policy),
        "unit": UNITS[task],
    }
    if served.source in ("prior", "evidence") and policy:
        out["policy"] = {k: policy[k] for k in ("origin", "expected_gain", "sd", "p_gain", "p_loss", "n")}
    if explain:
        out["explain"] = _explain(index, source, target, task, model)
    return out


def _expected_gain(source: str, decision: dict | None, policy: dict | None) -> float | None:
    """Points over direct: the policy's expectation, or a calibrated decision's measured gain."""
    if source in ("prior", "evidence") and policy:
        return float(policy["expected_gain"])
    if source == "calibrated" and decision and decision.get("gain") is not None:
        return 100.0 * float(decision["gain"]) if decision["decision"] != "direct" else 0.0
    return None


def _explain(index: Path, source: str, target: str, task: str, model: str | None) -> dict:
    """The fitted prior's terms and its prediction for every candidate of the pair."""
    from ..evaluation.route_policy import Prior, empty_prior, features
    from ..evaluation.route_signals import read_signals

    prior = Prior.from_dict(json.loads(model)) if model else empty_prior()
    signals = read_signals(index)
    candidates = []
    for bridge in signals.candidates(source, target):
        mean, var = prior.predict(features(signals, source, target, bridge))
        candidates.append({"bridge": bridge, "expected_gain": round(mean, 3), "sd": round(var**0.5, 3)})
    candidates.sort(key=lambda c: -c["expected_gain"])
    return {
        "fitted": model is not None,
        "n_evidence": prior.n_evidence,
        "n_pairs": prior.n_pairs,
        "tau": round(prior.tau2**0.5, 3),
        "lambda": prior.lam,
        "feature_set": prior.dense,
        "terms": [{"term": name, "coefficient": round(c, 4)} for name, c in prior.terms()],
        "candidates": candidates,
        "features": {c["bridge"]: _dense(features(signals, source, target, c["bridge"])) for c in candidates},
    }


def _dense(feats: dict[str, float]) -> dict[str, float]:
    """The named (non-indicator) features, rounded."""
    return {k: round(v, 4) for k, v in feats.items() if "=" not in k}


def route_lines(answer: dict) -> list[str]:
    """The text form of `route_answer`."""
    pair = f"{answer['source']} → {answer['target']} ({answer['task']})"
    if answer.get("decision_source") is None:
        return [f"{pair}: direct — {answer['reason']}"]
    gain = answer.get("expected_gain")
    gain_text = f", expected gain {gain:+.1f} {answer['unit']}" if gain is not None else ""
    lines = [
        f"{pair}: {answer['route']} — source {answer['decision_source']}{gain_text}",
        f"  {answer['reason']}",
    ]
    if "policy" in answer:
        p = answer["policy"]
        lines.append(
            f"  policy: P(gain > 0) {p['p_gain']:.3f}, P(loss beyond the margin) {p['p_loss']:.3f},"
            f" sd {p['sd']:.1f}, own evidence {p['n']} items"
        )
    explain = answer.get("explain")
    if explain:
        if not explain["fitted"]:
            lines.append(
                "  no prior fitted yet (run bridgex-index calibrate): every route is predicted 0 ± 10"
            )
        else:
            lines.append(
                f"  prior: fitted on {explain['n_evidence']} routes of {explain['n_pairs']} pairs;"
                f" tau {explain['tau']:.2f}, lambda {explain['lambda']:g};"
                f" reads {', '.join(explain['feature_set']) or 'the languages only'} (the set that best"
                " predicted a held-out pair); coefficients per standard deviation:"
            )
            lines += [
                f"    {t['term']:28} {t['coefficient']:+.3f}" for t in explain["terms"] if t["coefficient"]
            ]
        lines.append("  candidates (prior alone, before this pair's own evidence):")
        lines += [
            f"    {c['bridge']:4} {c['expected_gain']:+6.2f} ± {c['sd']:.2f}" for c in explain["candidates"]
        ]
    return lines
