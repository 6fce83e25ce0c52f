"""The outcome of a plan (its final answer and how it was reached) and the metadata shown to the client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .copies import is_copy
from .plan import Plan


@dataclass
class Outcome:
    """The final answer of one plan and how it was reached."""

    plan: Plan
    answer: str
    bridge_text: str | None
    finish_reason: str = "stop"
    calls: int = 1
    fallback: str | None = None  # "copy": the answer came from the direct route after a copy
    fallback_reason: str | None = None  # see `copy_reason`
    bridged_answer: str | None = None  # the bridged route's answer, replaced by the fallback

    @property
    def bridge_copied(self) -> bool:
        return self.bridge_text is not None and is_copy(self.plan.text, self.bridge_text)

    @property
    def route(self) -> str:
        """Where the final answer came from: `bridge`, `direct`, or `distilled` (one direct call with the
        pair's distilled demonstrations)."""
        if self.plan.mode == "distilled":
            return "distilled"
        return "direct" if self.plan.bridge is None or self.fallback else "bridge"

    def metadata(self) -> dict[str, Any]:
        p = self.plan
        meta = {
            "task": p.task,
            "source": p.source,
            "target": p.target,
            "bridge": p.bridge,
            "probability": p.probability,
            "mode": p.mode,
            "shots": len(p.demos),
            "bridge_text": self.bridge_text,
            "bridge_copied": self.bridge_copied,
            "calls": self.calls,
            "route": self.route,
            "decision_source": p.decision_source,
            "fallback": self.fallback,
        }
        if self.fallback:
            meta["fallback_reason"] = self.fallback_reason
            meta["bridged_answer"] = self.bridged_answer
        if p.calibration is not None:
            meta["calibration"] = p.calibration.summary()
        if p.policy is not None:
            meta["policy"] = p.policy.summary()
        if p.distilled is not None:
            meta["distilled"] = distilled_summary(p)
        return meta


def distilled_summary(plan: Plan) -> dict[str, Any]:
    """The demonstrations of a distilled plan: how many were distilled (and how), how many gold words."""
    assert plan.distilled is not None
    return plan.distilled.summary(len(plan.demos) - len(plan.distilled.examples))


def headers_for(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """`x-bridgex-*` response headers (ASCII only: the bridge rendering stays in the body).

    `x-bridgex-bridged` is true when the final answer came through a bridge (`route` is `bridge`)."""
    route = meta.get("route", "bridge")
    out = [("x-bridgex-bridged", "true" if route == "bridge" else "false")]
    for key in ("task", "source", "target", "bridge", "mode", "route", "decision_source", "fallback"):
        if meta.get(key) is not None:
            out.append((f"x-bridgex-{key.replace('_', '-')}", str(meta[key])))
    if meta.get("probability") is not None:
        out.append(("x-bridgex-probability", f"{meta['probability']:.6g}"))
    out.append(("x-bridgex-calls", str(meta.get("calls", 1))))
    return out
