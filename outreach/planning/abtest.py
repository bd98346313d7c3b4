"""The automatic winner of an A/B test (a rule's ``winner:``).

The test is a **fixed-sample** test, looked at once. It waits until every
variant has ``sample_per_variant`` sends — its first ones, in the order they
were planned — whose attribution windows have all closed; then it compares
every pair of variants with a two-sided interval for the difference of
their conversion rates (Newcombe's hybrid score interval) or of their
revenue per send (Welch's), each at confidence 1 − α/m for the m = k(k−1)/2
pairs of k variants (Bonferroni), so that the chance of declaring any
winner among variants that do not differ is at most α = 1 − ``confidence``.
A variant wins when its interval against every other variant lies above
zero. Later plans of the rule give every treated customer the winner.

Why not look at every plan until something is significant: each look is
another chance for chance alone to produce a "winner" (five looks at 5 %
each already make about 14 %). An always-valid sequential test (mSPRT)
would allow it, at the cost of a mixing parameter to choose and wider
intervals at any fixed size; a fixed sample per variant is what marketers
plan with (``stats.customers_needed`` tells the size for the difference
worth finding) and needs nothing beyond the report's own intervals.

When no variant beats every other one the decision is recorded as "no
winner" with the intervals, and the test is over: the rule keeps splitting
by the weights as written (the test could not tell the variants apart at
that size), and the marketer decides — drop a variant, or start a new test
under a new rule name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from itertools import permutations

from sqlalchemy.orm import Session

from outreach import logs, stats
from outreach.rules.spec import RuleSpec
from outreach.rules.variants import AutoWinner
from outreach.store import variants
from outreach.store.models import Rule

log = logs.get_logger("outreach.planning")


@dataclass(frozen=True)
class Comparison:
    """One variant against another: the difference of the metric (better − other)."""

    better: str
    other: str
    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class Decision:
    winner: str | None
    reason: str
    confidence_each: float
    comparisons: list[Comparison]


def _value(sample: variants.Sample, metric: str) -> float:
    if not sample.n:
        return 0.0
    return (sample.converted if metric == "conversion" else float(sample.revenue)) / sample.n


def _difference(first: variants.Sample, second: variants.Sample, metric: str,
                confidence: float) -> stats.Interval | None:
    if metric == "conversion":
        return stats.rate_difference(first.converted, first.n, second.converted, second.n, confidence)
    return stats.mean_difference(stats.Sums(first.n, float(first.revenue), float(first.revenue_squares)),
                                 stats.Sums(second.n, float(second.revenue), float(second.revenue_squares)),
                                 confidence)


def decide(samples: list[variants.Sample], policy: AutoWinner) -> Decision:
    """The test on complete samples: the variant whose difference from every
    other one is above zero at the Bonferroni-corrected confidence, or none."""
    k = len(samples)
    pairs = k * (k - 1) // 2
    each = 1 - (1 - policy.confidence) / pairs
    comparisons = []
    for first, second in permutations(samples, 2):
        interval = _difference(first, second, policy.metric, each)
        if interval is not None:
            comparisons.append(Comparison(first.variant, second.variant, interval.estimate, interval.low,
                                          interval.high))
    winners = [s.variant for s in samples
               if sum(1 for c in comparisons if c.better == s.variant and c.low > 0) == k - 1]
    what = "conversion rate" if policy.metric == "conversion" else "revenue per send"
    figures = ", ".join(f"{s.variant} {_value(s, policy.metric):.4g}" for s in samples)
    if winners:
        best = winners[0]
        beaten = [c for c in comparisons if c.better == best]
        weakest = min(beaten, key=lambda c: c.low)
        reason = (f"{best} has the highest {what} ({figures}; first {policy.sample_per_variant:,} sends each) and "
                  f"beats every other variant: against {weakest.other} by {weakest.estimate:+.4g} "
                  f"[{weakest.low:+.4g}, {weakest.high:+.4g}] at {each:.2%} confidence each "
                  f"({policy.confidence:.0%} for the {pairs} comparison(s) together)")
        return Decision(best, reason, each, comparisons)
    reason = (f"no variant beats every other one at {policy.confidence:.0%} confidence ({what}: {figures}; "
              f"first {policy.sample_per_variant:,} sends each): the test is over without a winner and the "
              "weights stay as written")
    return Decision(None, reason, each, comparisons)


def settle(session: Session, spec: RuleSpec, rule: Rule, *, now: datetime) -> str | None:
    """The variant every treated customer of this plan gets, if the rule's
    test has a winner — deciding it now when the samples are complete."""
    names = [name for name, _ in spec.weights]
    if not names:
        return None
    decision = variants.decision_of(session, rule.id)
    if decision is not None or spec.winner is None:
        return variants.winner_in_force(decision, names)
    policy = spec.winner
    samples = variants.first_sends(session, rule.id, size=policy.sample_per_variant, variants=names)
    if not all(s.complete(policy.sample_per_variant, now) for s in samples):
        return None
    # Exactly the first ``sample_per_variant`` sends of each: a variant with more must not weigh more.
    result = decide(samples, policy)
    variants.record_decision(
        session, rule.id, decided_at=now, winner=result.winner, metric=policy.metric,
        sample_per_variant=policy.sample_per_variant, confidence=policy.confidence, reason=result.reason,
        results={"confidence_each": result.confidence_each,
                 "variants": {s.variant: {"sends": s.n, "converted": s.converted, "revenue": str(s.revenue),
                                          "value": _value(s, policy.metric)} for s in samples},
                 "comparisons": [asdict(c) for c in result.comparisons]})
    log.info("a/b test decided", rule=spec.name, winner=result.winner, reason=result.reason)
    return result.winner


__all__ = ["Comparison", "Decision", "decide", "settle"]
