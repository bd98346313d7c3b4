"""The report's statistics against SciPy's and statsmodels' (an independent
implementation of each): Newcombe's and Welch's intervals, t quantiles,
sample sizes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from outreach.stats import Sums, customers_needed, mean_difference, rate_difference, t_quantile, wilson


@settings(max_examples=500, deadline=None)
@given(p=st.floats(0.0005, 0.9995), df=st.one_of(st.integers(1, 2000), st.floats(1, 500)))
def test_t_quantiles_are_scipys(p: float, df: float) -> None:
    assert t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-9, abs=1e-9)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 5000), data=st.data())
def test_wilson_is_statsmodels(n: int, data: st.DataObject) -> None:
    x = data.draw(st.integers(0, n))
    found = wilson(x, n)
    assert found is not None
    low, high = proportion_confint(x, n, alpha=0.05, method="wilson")
    assert (found.low, found.high) == pytest.approx((low, high), abs=1e-9)


@settings(max_examples=300, deadline=None)
@given(n1=st.integers(1, 5000), n2=st.integers(1, 5000), data=st.data())
def test_rate_differences_are_newcombes_as_statsmodels_computes_them(n1: int, n2: int, data: st.DataObject) -> None:
    x1, x2 = data.draw(st.integers(0, n1)), data.draw(st.integers(0, n2))
    found = rate_difference(x1, n1, x2, n2)
    assert found is not None
    low, high = confint_proportions_2indep(x1, n1, x2, n2, method="newcomb", compare="diff")
    assert found.estimate == pytest.approx(x1 / n1 - x2 / n2)
    assert (found.low, found.high) == pytest.approx((low, high), abs=1e-9)


def test_the_issues_birthday_example_is_not_significant() -> None:
    # +9.2 pp with a control group of 9: the report must not call it a lift
    found = rate_difference(39, 150, 3, 9)  # 26% vs 33%: and the other way round
    assert found is not None and not found.significant
    assert rate_difference(0, 0, 1, 9) is None


@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")  # SciPy's, on near-equal data
@settings(max_examples=200, deadline=None)
@given(a=st.lists(st.floats(0, 10_000, allow_nan=False), min_size=2, max_size=60),
       b=st.lists(st.floats(0, 10_000, allow_nan=False), min_size=2, max_size=60))
def test_mean_differences_are_welchs_as_scipy_computes_them(a: list[float], b: list[float]) -> None:
    found = mean_difference(Sums(len(a), sum(a), sum(x * x for x in a)), Sums(len(b), sum(b), sum(x * x for x in b)))
    assert found is not None
    assert found.estimate == pytest.approx(sum(a) / len(a) - sum(b) / len(b), abs=1e-6)
    if len(set(a)) > 1 or len(set(b)) > 1:
        reference = scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
        assert (found.low, found.high) == pytest.approx((reference.low, reference.high), rel=1e-3, abs=1e-3)


def test_customers_needed_is_the_textbook_figure() -> None:
    # 5% vs 6%, two-sided 5%, power 80%: about 8,160 a group (Fleiss; statsmodels' arcsine version: 8,150)
    needed = customers_needed(0.06, 0.05)
    assert needed is not None and 8_100 <= needed <= 8_200
    assert customers_needed(0.1, 0.1) is None
    assert math.isclose(customers_needed(0.3, 0.1) or 0, 62, abs_tol=2)
