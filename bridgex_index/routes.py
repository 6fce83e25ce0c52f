"""The route a pair gets when the client names none: one rule, read by the server (`bridgex_serve.plan`) and
by `bridgex-index route`, so what the command prints is what the server does.

Pure: plain values in, a `ServedRoute` out. In order:
0. sentences (task translate) of a pair with distilled demonstrations (`distilled_demonstrations`, written
   by `bridgex-index distill`), unless the `distilled` setting is `off`: ONE direct call with them in front,
   source `distilled` (measured above the English pivot and direct on Qwen: docs/results/beyond-route.md);
1. the pair's stored decision for the task (`routing_decisions`, written by `calibrate`): `calibrated`;
2. otherwise, per the `uncalibrated` setting:
   - `policy` (the default): the route policy's row for the pair (`route_policy`, written by `calibrate`
     for every ordered pair of the index's languages: the prior learned from the calibrated pairs, pooled):
     source `prior` (or `evidence` for a pair the policy measured itself); without a row (an index no
     `calibrate` has run on) direct, source `default`: with no evidence the prior expects no gain;
   - `hsic`: the index's HSIC rank-1 bridge (the paper's rule), source `hsic`; none ranked: no bridge;
   - `direct`: direct, source `default`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

UNCALIBRATED = ("policy", "hsic", "direct")
DEFAULT_UNCALIBRATED = "policy"
DECISION_SOURCES = ("client", "distilled", "calibrated", "evidence", "prior", "hsic", "default")
# the server's `distilled` setting: serve a pair's distilled sentence set (auto), or only on request (off)
DISTILLED = ("auto", "off")


def serves_distilled(setting: str, task: str) -> bool:
    """Whether requests of `task` ("word" or "translate") that leave the route to the server take a
    pair's distilled set under the `distilled` setting: sentences only (words were not measured)."""
    return setting == "auto" and task == "translate"


@dataclass(frozen=True)
class ServedRoute:
    """Where a pair's answer goes: `bridge` (None: direct), why (`source`), and a one-line `reason`.
    `ranked` is False only for the `hsic` rule on a pair the index ranks no bridge for."""

    bridge: str | None
    source: str
    reason: str
    ranked: bool = True

    @property
    def distilled(self) -> bool:
        """One direct call with the pair's distilled demonstrations in front."""
        return self.source == "distilled"


def served_route(
    source: str,
    target: str,
    *,
    decision: str | None,
    policy: Mapping | None,
    rank1: str | None,
    uncalibrated: str,
    distilled: bool = False,
) -> ServedRoute:
    """The rule of the module docstring. `decision`: the stored decision ('direct' or a bridge) or None;
    `policy`: the pair's `route_policy` row (its `route`, `origin`, `expected_gain`) or None; `rank1`: the
    HSIC rank-1 bridge or None; `distilled`: the pair has distilled demonstrations for the request's task
    and the server serves them (translate only, `distilled` setting `auto`: the caller decides)."""
    if uncalibrated not in UNCALIBRATED:
        raise ValueError(f"uncalibrated must be one of {', '.join(UNCALIBRATED)}, got {uncalibrated!r}")
    pair = f"{source}→{target}"
    if distilled:
        return ServedRoute(None, "distilled", f"distilled demonstrations for {pair}: one direct call")
    if decision is not None:
        bridge = None if decision == "direct" else decision
        return ServedRoute(bridge, "calibrated", f"calibrated decision for {pair}: {decision}")
    if uncalibrated == "direct":
        return ServedRoute(None, "default", f"uncalibrated pair {pair}: direct by configuration")
    if uncalibrated == "hsic":
        if rank1 is None:
            return ServedRoute(None, "hsic", f"no bridge in the index for {pair}", ranked=False)
        return ServedRoute(rank1, "hsic", f"HSIC rank-1 bridge for {pair}: {rank1}")
    if policy is None:
        if source == target:
            reason = "qa and chat are never calibrated: direct under the route policy"
            return ServedRoute(None, "default", reason)
        return ServedRoute(None, "default", f"no route policy for {pair} (never calibrated): direct")
    route = policy["route"]
    origin = policy.get("origin") or "prior"
    gain = float(policy.get("expected_gain") or 0.0)
    return ServedRoute(
        None if route == "direct" else route,
        origin,
        f"route policy ({origin}) for {pair}: {route}, expected gain {gain:+.1f}",
    )
