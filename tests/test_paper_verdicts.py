"""The verdict rules of the terminal-phase report on synthetic results (ul_jax/paper/verdicts.py).

Every rule is checked on both sides of each threshold, so that flipping a comparison (a sign, a
``<`` for ``>``, a swapped role) fails a test.
"""

import math

import numpy as np
import pytest
from scipy import stats

from ul_jax.paper.verdicts import (
    RULES,
    ClaimRule,
    PairedDiff,
    Rule,
    decide,
    judge,
    paired_difference,
)


def _pd(mean, low, high, n=3):
    return PairedDiff(tuple(range(n)), (mean,) * n, mean, low, high, 0.95)


def test_paired_difference_by_hand():
    a = {0: 60.0, 1: 62.0, 2: 58.0, 5: 99.0}  # seed 5 has no partner: dropped
    b = {0: 59.0, 1: 59.0, 2: 56.0, 3: 10.0}
    d = paired_difference(a, b)
    assert d.seeds == (0, 1, 2)
    assert d.diffs == (1.0, 3.0, 2.0)
    assert d.mean == pytest.approx(2.0)
    # sd = 1, t_{0.975, 2} = 4.302652729911275
    half = 4.302652729911275 / math.sqrt(3)
    assert d.low == pytest.approx(2.0 - half, abs=1e-9)
    assert d.high == pytest.approx(2.0 + half, abs=1e-9)
    # the direction matters
    r = paired_difference(b, a)
    assert r.mean == pytest.approx(-2.0) and r.high == pytest.approx(-d.low)


def test_paired_difference_matches_scipy_ttest_interval():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=7), rng.normal(size=7)
    d = paired_difference(dict(enumerate(a)), dict(enumerate(b)), confidence=0.9)
    ci = stats.ttest_rel(a, b).confidence_interval(confidence_level=0.9)
    assert d.low == pytest.approx(ci.low, rel=1e-9) and d.high == pytest.approx(ci.high, rel=1e-9)


def test_paired_difference_edge_cases():
    one = paired_difference({0: 1.0}, {0: 0.5})
    assert one.n == 1 and one.low == -math.inf and one.high == math.inf
    none = paired_difference({0: 1.0}, {1: 0.5})
    assert none.n == 0 and math.isnan(none.mean)
    nan = paired_difference({0: float("nan"), 1: 2.0}, {0: 1.0, 1: 1.0})
    assert nan.seeds == (1,)
    with pytest.raises(ValueError, match="confidence"):
        paired_difference({}, {}, confidence=1.0)


@pytest.mark.parametrize(
    "mean,low,high,expected",
    [
        (0.0, -0.5, 0.5, "holds"),  # on par
        (-0.9, -1.9, 0.1, "holds"),  # just inside margin and floor
        (-1.1, -1.9, -0.3, "inconclusive"),  # mean outside the margin
        (-0.5, -2.1, 1.1, "inconclusive"),  # interval too wide
        (-3.0, -4.0, -1.01, "fails"),  # clearly worse than the margin
        (-3.0, -5.0, -0.99, "inconclusive"),  # worse, but not surely by more than the margin
        (5.0, 4.0, 6.0, "holds"),  # better is not inferior
    ],
)
def test_noninferior(mean, low, high, expected):
    assert decide(Rule("noninferior", margin=1.0, floor=2.0), _pd(mean, low, high)) == expected


@pytest.mark.parametrize(
    "mean,low,high,expected",
    [
        (2.0, 0.1, 3.9, "holds"),
        (2.0, -0.1, 4.1, "inconclusive"),
        (0.0, -0.5, 0.9, "fails"),  # any gain is below the 1-pt effect
        (-3.0, -4.0, -2.0, "fails"),  # a significant loss
        (0.5, -0.5, 1.5, "inconclusive"),
    ],
)
def test_superior(mean, low, high, expected):
    assert decide(Rule("superior", effect=1.0), _pd(mean, low, high)) == expected


def test_few_seeds_never_decide():
    r = Rule("superior", effect=1.0)
    assert decide(r, paired_difference({0: 90.0}, {0: 10.0})) == "inconclusive"
    assert decide(r, paired_difference({}, {})) == "pending"


def test_rule_checks_its_thresholds():
    with pytest.raises(ValueError, match="kind"):
        Rule("better")
    with pytest.raises(ValueError, match="margin"):
        Rule("noninferior", margin=3.0, floor=2.0)
    with pytest.raises(ValueError, match="effect"):
        Rule("superior", effect=-1.0)


def _values(**roles):
    return {role: {m: dict(enumerate(v)) for m, v in ms.items()} for role, ms in roles.items()}


def test_judge_2a_on_par_and_flipped():
    on_par = _values(
        ul_pal_sel={"top1": [60.1, 61.0, 59.8]},
        ce={"top1": [60.0, 60.9, 60.0]},
    )
    assert judge(RULES["2a"], on_par).outcome == "holds"
    worse = _values(
        ul_pal_sel={"top1": [55.0, 55.5, 54.8]},
        ce={"top1": [60.0, 60.9, 60.0]},
    )
    v = judge(RULES["2a"], worse)
    assert v.outcome == "fails" and v.diff.mean < -4
    # swapping the roles makes UL+PAL the better one: on par (non-inferior) again
    swapped = ClaimRule("x", "", "ce", "ul_pal_sel", "top1", RULES["2a"].rule)
    assert judge(swapped, worse).outcome == "holds"


def test_judge_lower_is_better_ece_with_guard():
    # CE+EFR has a 10-pt lower ECE in every seed at equal accuracy: holds
    good = _values(
        ce_efr_nll={"ece": [20.0, 21.0, 19.0], "top1": [50.0, 51.0, 49.5]},
        ce={"ece": [30.0, 31.5, 29.0], "top1": [50.2, 50.5, 49.7]},
    )
    v = judge(RULES["4"], good)
    assert v.outcome == "holds" and v.diff.mean == pytest.approx(10.166666, rel=1e-4)
    assert v.guard_outcome == "holds"
    # the same ECE numbers with the roles' ECE swapped: EFR raises ECE → fails
    bad = _values(
        ce_efr_nll={"ece": [30.0, 31.5, 29.0], "top1": [50.0, 51.0, 49.5]},
        ce={"ece": [20.0, 21.0, 19.0], "top1": [50.2, 50.5, 49.7]},
    )
    assert judge(RULES["4"], bad).outcome == "fails"
    # lower ECE bought with a large accuracy loss: the guard fails the claim
    collapsed = _values(
        ce_efr_nll={"ece": [2.0, 2.5, 1.5], "top1": [10.0, 10.0, 10.0]},
        ce={"ece": [30.0, 31.5, 29.0], "top1": [50.2, 50.5, 49.7]},
    )
    v = judge(RULES["4"], collapsed)
    assert v.outcome == "fails" and v.guard_outcome == "fails"


def test_judge_pending_without_runs():
    v = judge(RULES["2b"], {})
    assert v.outcome == "pending" and "no paired seeds" in v.text
