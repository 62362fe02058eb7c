"""The night's deploy decision: promote the candidate, keep the champion, or blocked (by which gates, by how much).

Pure: the ``deploy_gate`` asset builds it from the recomputed gates, the registry history records
it, the command line prints its headline and the UI shows it as the asset's metadata.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from fraud_pipeline.deployment.gates import GateResult

#: The three outcomes of a night.
PROMOTE, KEEP_CHAMPION, BLOCKED = "promote", "keep_champion", "blocked"
#: The gate that compares the candidate with the champion: missing it keeps the champion, it never blocks.
CHAMPION_GATE = "not_worse_than_champion"


def short(version: str | None) -> str:
    """A version as a headline shows it ("none" before the first promotion)."""
    return "none" if version is None else version


def gate_summary(gate: GateResult) -> str:
    """``cost_beats_baselines (cost_vs_approve_all 12,345 > bound 11,000)``: a gate and the bounds it missed."""
    missed = gate.missed() if not gate.passed else []
    return f"{gate.name} ({'; '.join(m.shown() for m in missed)})" if missed else gate.name


@dataclass(frozen=True)
class DeployDecision:
    """What a night decided about its candidate, with every gate's verdict and numbers.

    Attributes:
        as_of: The night (``YYYY-MM-DD...``).
        candidate: The candidate's version.
        champion: The champion when the decision was taken (None before the first promotion).
        outcome: ``promote``, ``keep_champion`` or ``blocked``.
        gates: Every gate, recomputed, the champion comparison last.
        problems: Why the candidate is blocked besides its gates (a guarding check's record).
        champion_problem: Why the registry's champion is unreadable, when it is (the candidate is
            then judged as if there were none).
    """

    as_of: str
    candidate: str
    champion: str | None
    outcome: str
    gates: tuple[GateResult, ...]
    problems: tuple[str, ...] = field(default=())
    champion_problem: str | None = None

    @property
    def blocked_by(self) -> list[GateResult]:
        """The gates that failed, the champion comparison aside (it keeps the champion, it does not block)."""
        return [g for g in self.gates if not g.passed and g.name != CHAMPION_GATE]

    def headline(self) -> str:
        """One line a person reads: what happened, why, and who serves tomorrow."""
        champion = short(self.champion)
        if self.outcome == BLOCKED:
            reasons = [gate_summary(g) for g in self.blocked_by] + list(self.problems)
            stays = f"champion {champion} stays" if self.champion else "no champion yet, nothing is served"
            return f"candidate {short(self.candidate)} blocked by {', '.join(reasons)}; {stays}"
        challenge = next((g for g in self.gates if g.name == CHAMPION_GATE), None)
        why = f": {challenge.reason}" if challenge is not None else ""
        if self.outcome == KEEP_CHAMPION:
            return f"kept the champion {champion}; candidate {short(self.candidate)} passed every gate{why}"
        return f"promoted {short(self.candidate)} (champion was {champion}); every gate passed{why}"

    def record(self) -> dict:
        """The registry-history line of a blocked night (a promotion or a kept champion is recorded by the deploy)."""
        return {
            "event": "blocked",
            "version": self.candidate,
            "champion": self.champion,
            "as_of": self.as_of,
            "reason": self.headline(),
            "blocked_by": [g.name for g in self.blocked_by],
            "problems": list(self.problems),
            "gates": gate_records(self.gates),
        }

    def to_metadata(self) -> dict:
        """Plain values for the asset's metadata: the decision and its headline first, then per-gate numbers."""
        return {
            "decision": self.outcome,
            "headline": self.headline(),
            "candidate": self.candidate,
            "champion": self.champion or "none",
            "blocked_by": [g.name for g in self.blocked_by],
            "n_gates_failed": len(self.blocked_by),
            "gates": gate_records(self.gates),
        }


def gate_records(gates) -> list[dict]:
    """Each gate's name, verdict and numbers (observed, bound, margin), the shape history lines keep.

    A number that is not finite (a bound that could not be computed) is written as null, so every
    line is strict JSON.
    """
    return [
        {
            "name": g.name,
            "passed": g.passed,
            "measures": [{k: _finite(v) for k, v in asdict(m).items()} for m in g.measures],
        }
        for g in gates
    ]


def _finite(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def deploy_decision(
    as_of: str,
    candidate: str,
    champion: str | None,
    gates: list[GateResult],
    challenge: GateResult | None,
    problems: list[str] = (),
    champion_problem: str | None = None,
) -> DeployDecision:
    """Blocked when a gate failed or a problem is named; else promote unless the champion comparison failed."""
    judged = tuple([*gates, *([challenge] if challenge is not None else [])])
    failed = [g for g in gates if not g.passed]
    if failed or problems:
        outcome = BLOCKED
    elif challenge is not None and not challenge.passed:
        outcome = KEEP_CHAMPION
    else:
        outcome = PROMOTE
    return DeployDecision(as_of, candidate, champion, outcome, judged, tuple(problems), champion_problem)
