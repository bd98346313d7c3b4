"""The statistics the ROI report and A/B tests stand on: intervals for a
difference of two rates and of two means, and the sample size that would
detect a difference. Pure functions of counts and sums (the database adds
them up), no dependencies beyond the standard library.

* :func:`rate_difference` — Newcombe's hybrid score interval (method 10 of
  Newcombe 1998) for p₁ − p₂: built from each group's Wilson interval, it
  keeps its coverage with small groups and rates near 0 or 1, where the
  textbook Wald interval does not (a control group of 9 with no orders).
* :func:`mean_difference` — Welch's interval for μ₁ − μ₂ from each group's
  count, sum and sum of squares (revenue per customer: unequal variances).
* :func:`customers_needed` — per group, to detect a difference of two rates
  with the usual 5% significance and 80% power.

An :class:`Interval` is an estimate with its 95% bounds (``confidence``
otherwise); ``None`` where there is nothing to estimate from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

#: The confidence of every interval unless one is asked for.
CONFIDENCE = 0.95
#: The power :func:`customers_needed` plans for.
POWER = 0.8


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        """Whether the interval excludes zero."""
        return self.low > 0 or self.high < 0

    def scaled(self, factor: float, offset: float = 0.0) -> Interval:
        """The interval of ``estimate × factor + offset`` (a linear function of it)."""
        ends = sorted((self.low * factor + offset, self.high * factor + offset))
        return Interval(self.estimate * factor + offset, ends[0], ends[1])


def z_for(confidence: float = CONFIDENCE) -> float:
    """The two-sided normal quantile: 1.96 for 95%."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: int, trials: int, confidence: float = CONFIDENCE) -> Interval | None:
    """Wilson's score interval for one rate."""
    if trials <= 0:
        return None
    z = z_for(confidence)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def rate_difference(x1: int, n1: int, x2: int, n2: int, confidence: float = CONFIDENCE) -> Interval | None:
    """p₁ − p₂ (``x`` successes of ``n``) with Newcombe's hybrid score interval."""
    first, second = wilson(x1, n1, confidence), wilson(x2, n2, confidence)
    if first is None or second is None:
        return None
    p1, p2 = first.estimate, second.estimate
    d = p1 - p2
    low = d - math.sqrt((p1 - first.low) ** 2 + (second.high - p2) ** 2)
    high = d + math.sqrt((first.high - p1) ** 2 + (p2 - second.low) ** 2)
    return Interval(d, low, high)


@dataclass(frozen=True)
class Sums:
    """One group's count, sum and sum of squares of a measure (what SQL adds up)."""

    n: int
    total: float
    squares: float

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """The sample variance (n − 1), 0 for fewer than two."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.squares - self.total * self.total / self.n) / (self.n - 1))


def mean_difference(first: Sums, second: Sums, confidence: float = CONFIDENCE) -> Interval | None:
    """μ₁ − μ₂ with Welch's interval (Welch–Satterthwaite degrees of freedom)."""
    if first.n < 2 or second.n < 2:
        return None
    d = first.mean - second.mean
    a, b = first.variance / first.n, second.variance / second.n
    if a + b == 0:
        return Interval(d, d, d)
    df = (a + b) ** 2 / ((a * a / (first.n - 1) if a else 0.0) + (b * b / (second.n - 1) if b else 0.0))
    half = t_quantile(0.5 + confidence / 2, df) * math.sqrt(a + b)
    return Interval(d, d - half, d + half)


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile: Hill's approximation (ACM algorithm 396, 1970)
    refined by Newton's method on the exact distribution function, for any
    df ≥ 1 (Welch's degrees of freedom are fractional)."""
    if not 0 < p < 1:
        raise ValueError("p is a probability strictly between 0 and 1")
    if df < 1:
        raise ValueError("a t distribution has at least 1 degree of freedom")
    if p == 0.5:
        return 0.0
    upper = p > 0.5
    q = p if upper else 1 - p  # the upper quantile, then mirrored
    t = _hill(2 * (1 - q), df)
    for _ in range(NEWTON_STEPS):
        step = (t_cdf(t, df) - q) / _t_pdf(t, df)
        t -= step
        if abs(step) < 1e-12 * max(1.0, abs(t)):
            break
    return t if upper else -t


#: Newton steps at most (from Hill's start, two or three are enough).
NEWTON_STEPS = 50


def t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _incomplete_beta(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t > 0 else tail


def _t_pdf(t: float, df: float) -> float:
    log = (math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
           - (df + 1) / 2 * math.log1p(t * t / df))
    return math.exp(log)


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued
    fraction (Lentz's method, as in Numerical Recipes' betai)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1 - front * _beta_fraction(b, a, 1 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < eps:
            break
    return h


def _hill(p: float, n: float) -> float:
    """The t with P(|T| > t) = p (Hill 1970, algorithm 396)."""
    if n == 1:
        return math.cos(p * math.pi / 2) / math.sin(p * math.pi / 2)
    if n == 2:
        return math.sqrt(2 / (p * (2 - p)) - 2)
    a = 1 / (n - 0.5)
    b = 48 / (a * a)
    c = ((20700 * a / b - 98) * a - 16) * a + 96.36
    d = ((94.5 / (b + c) - 3) / b + 1) * math.sqrt(a * math.pi / 2) * n
    x = d * p
    y = x ** (2 / n)
    if y > 0.05 + a:
        x = NormalDist().inv_cdf(p * 0.5)
        y = x * x
        if n < 5:
            c += 0.3 * (n - 4.5) * (x + 0.6)
        c = (((0.05 * d * x - 5) * x - 7) * x - 2) * x + b + c
        y = (((((0.4 * y + 6.3) * y + 36) * y + 94.5) / c - y - 3) / b + 1) * x
        y = math.expm1(a * y * y)
    else:
        y = ((1 / (((n + 6) / (n * y) - 0.089 * d - 0.822) * (n + 2) * 3) + 0.5 / (n + 4)) * y - 1) * (n + 1) / (
            n + 2) + 1 / y
    return math.sqrt(n * y)


def customers_needed(p1: float, p2: float, *, confidence: float = CONFIDENCE, power: float = POWER) -> int | None:
    """Customers per group for a two-sided test of p₁ = p₂ to find a true
    difference of ``p1 − p2`` (normal approximation); None when there is no
    difference to find."""
    if p1 == p2:
        return None
    z_alpha, z_beta = z_for(confidence), NormalDist().inv_cdf(power)
    pooled = (p1 + p2) / 2
    n = (z_alpha * math.sqrt(2 * pooled * (1 - pooled)) + z_beta * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / (
        (p1 - p2) ** 2)
    return math.ceil(n)
