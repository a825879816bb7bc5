"""Verdict rules of the terminal-phase report: paired differences and decisions.

A claim compares two models trained with the *same seed* (same initialization key, same data
order, same augmentation keys): the per-seed differences ``d_k = a_k − b_k`` (in points, i.e.
percent) are the unit of evidence. :func:`paired_difference` gives their mean and the two-sided
Student-t interval

    mean(d) ± t_{(1+c)/2, n−1} · sd(d) / √n      (c = 0.95; sd with ddof = 1),

and a :class:`Rule` turns that interval into one of three outcomes — ``holds``, ``fails``,
``inconclusive`` — by thresholds fixed *before* the runs (:data:`RULES`). Two kinds:

* ``noninferior`` (``margin`` m, ``floor`` f; "a is not worse than b"): holds if
  mean ≥ −m and low ≥ −f; fails if high < −m (a is worse by more than the margin with 95 %
  confidence); otherwise inconclusive;
* ``superior`` (``effect`` δ; "a is better than b"): holds if low > 0; fails if high < δ (any
  improvement is smaller than δ with 95 % confidence — including a significant loss);
  otherwise inconclusive.

Fewer than two paired seeds never decide: the outcome is ``inconclusive`` (one seed) or
``pending`` (none). Everything here is pure: numbers in, a :class:`Verdict` out.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np
from scipy import stats

OUTCOMES = ("holds", "fails", "inconclusive", "pending")


@dataclasses.dataclass(frozen=True)
class PairedDiff:
    """``a − b`` over the seeds both have: per-seed differences, their mean and interval."""

    seeds: tuple[int, ...]
    diffs: tuple[float, ...]
    mean: float
    low: float
    high: float
    confidence: float

    @property
    def n(self) -> int:
        return len(self.diffs)

    def text(self, unit: str = "pts") -> str:
        """``"+1.23 pts [−0.40, +2.86] (n = 3)"``; one seed: no interval."""
        if self.n == 0:
            return "no paired seeds"
        if self.n == 1:
            return f"{self.mean:+.2f} {unit} (n = 1, no interval)"
        c = round(100 * self.confidence)
        return (
            f"{self.mean:+.2f} {unit}, {c} % CI [{self.low:+.2f}, {self.high:+.2f}] (n = {self.n})"
        )


def paired_difference(
    a: Mapping[int, float], b: Mapping[int, float], confidence: float = 0.95
) -> PairedDiff:
    """The paired difference ``a − b`` over the seeds present in both ``{seed: value}`` maps.

    Interval: Student t with n − 1 degrees of freedom (module docstring); n = 1 gives
    ``(−inf, inf)``, n = 0 NaNs. Non-finite values are dropped with their seed.

    Raises:
      ValueError: ``confidence`` not in (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}")
    seeds = tuple(
        sorted(
            k for k in set(a) & set(b) if math.isfinite(float(a[k])) and math.isfinite(float(b[k]))
        )
    )
    d = np.array([float(a[k]) - float(b[k]) for k in seeds], np.float64)
    n = len(d)
    if n == 0:
        nan = float("nan")
        return PairedDiff((), (), nan, nan, nan, confidence)
    mean = float(d.mean())
    if n == 1:
        return PairedDiff(seeds, tuple(d.tolist()), mean, -math.inf, math.inf, confidence)
    half = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1) * d.std(ddof=1) / math.sqrt(n))
    return PairedDiff(seeds, tuple(d.tolist()), mean, mean - half, mean + half, confidence)


@dataclasses.dataclass(frozen=True)
class Rule:
    """A decision on a paired difference (module docstring). Thresholds in the difference's
    unit (points)."""

    kind: str  # "noninferior" | "superior"
    margin: float = 1.0  # noninferior: the mean may be at most this much below 0
    floor: float = 2.0  # noninferior: the interval's low end may be at most this much below 0
    effect: float = 1.0  # superior: an improvement smaller than this counts as none

    def __post_init__(self):
        if self.kind not in ("noninferior", "superior"):
            raise ValueError(f"Rule.kind must be 'noninferior' or 'superior'; got {self.kind!r}")
        if self.kind == "noninferior" and not 0 <= self.margin <= self.floor:
            raise ValueError(
                f"noninferior needs 0 <= margin <= floor; got margin={self.margin}, "
                f"floor={self.floor}"
            )
        if self.kind == "superior" and self.effect < 0:
            raise ValueError(f"superior needs effect >= 0; got effect={self.effect}")

    def describe(self) -> str:
        if self.kind == "noninferior":
            return (
                f"holds if mean ≥ −{self.margin:g} and CI low ≥ −{self.floor:g}; "
                f"fails if CI high < −{self.margin:g}"
            )
        return f"holds if CI low > 0; fails if CI high < {self.effect:g}"


def decide(rule: Rule, diff: PairedDiff) -> str:
    """One of :data:`OUTCOMES` for ``diff`` under ``rule`` (module docstring)."""
    if diff.n == 0:
        return "pending"
    if diff.n < 2:
        return "inconclusive"
    if rule.kind == "noninferior":
        if diff.high < -rule.margin:
            return "fails"
        if diff.mean >= -rule.margin and diff.low >= -rule.floor:
            return "holds"
        return "inconclusive"
    if diff.low > 0:
        return "holds"
    if diff.high < rule.effect:
        return "fails"
    return "inconclusive"


@dataclasses.dataclass(frozen=True)
class ClaimRule:
    """A claim's comparison as written down before the runs: ``a − b`` of ``metric`` (points;
    ``lower_is_better`` metrics such as ECE are compared as ``b − a`` so that a positive
    difference always favours ``a``), decided by ``rule``; ``guard`` (optional) is a second
    comparison (metric, rule) that must not fail for the claim to hold, e.g. "at equal
    accuracy"."""

    claim: str
    statement: str
    a: str  # the model the claim is about (a role of the report, e.g. "ul_pal_sel")
    b: str  # what it is compared with
    metric: str  # a metric name of the report, e.g. "top1", "ece", "mean_top1"
    rule: Rule
    lower_is_better: bool = False
    guard: tuple[str, Rule] | None = None


# Written down before the terminal-phase runs (2026-12-07, commit of this file); the report
# applies them unchanged. Points of test-set metrics; "sel" = λ or s selected on validation at
# the reported budget (λ = 0 a candidate), on the selection seed.
RULES: dict[str, ClaimRule] = {
    "2a": ClaimRule(
        "2a",
        "UL+PAL (EFR λ selected on validation, λ = 0 a candidate) is on par with CE",
        "ul_pal_sel",
        "ce",
        "top1",
        Rule("noninferior", margin=1.0, floor=2.0),
    ),
    "2a_vanilla": ClaimRule(
        "2a_vanilla",
        "vanilla UL+PAL (no EFR) is on par with CE",
        "ul_pal",
        "ce",
        "top1",
        Rule("noninferior", margin=1.0, floor=2.0),
    ),
    "2b": ClaimRule(
        "2b",
        "RLR speeds up UL+FNPAL (s selected on validation for each): higher mean test top-1 "
        "over the evaluations",
        "ul_fnpal_rlr_sel",
        "ul_fnpal_sel",
        "mean_top1",
        Rule("superior", effect=1.0),
    ),
    "4": ClaimRule(
        "4",
        "EFR lowers CE's test ECE (λ selected by validation NLL) at equal accuracy",
        "ce_efr_nll",
        "ce",
        "ece",
        Rule("superior", effect=1.0),
        lower_is_better=True,
        guard=("top1", Rule("noninferior", margin=1.0, floor=2.0)),
    ),
    "4_ul": ClaimRule(
        "4_ul",
        "EFR lowers UL+PAL's test ECE (λ selected on validation top-1)",
        "ul_pal_sel",
        "ul_pal",
        "ece",
        Rule("superior", effect=1.0),
        lower_is_better=True,
    ),
    # long-tailed settings (Table 2): top-1 on the balanced test set
    "3_ul": ClaimRule(
        "3_ul",
        "EFR improves UL+PAL on long-tailed data (λ selected on validation)",
        "ul_pal_sel",
        "ul_pal",
        "top1",
        Rule("superior", effect=1.0),
    ),
    "3_ce": ClaimRule(
        "3_ce",
        "EFR improves CE on long-tailed data (λ selected on validation, λ = 0 a candidate)",
        "ce_sel",
        "ce",
        "top1",
        Rule("superior", effect=1.0),
    ),
    "3_vanilla": ClaimRule(
        "3_vanilla",
        "vanilla UL+PAL beats CE on long-tailed data (Table 2: 72.6 vs 67.8 % at ρ = 100)",
        "ul_pal",
        "ce",
        "top1",
        Rule("superior", effect=1.0),
    ),
    "3_sel": ClaimRule(
        "3_sel",
        "UL+PAL(+EFR) is on par with CE(+EFR) on long-tailed data, both selected on validation",
        "ul_pal_sel",
        "ce_sel",
        "top1",
        Rule("noninferior", margin=1.0, floor=2.0),
    ),
    # class split (Table 3 / Fig. 3): near-OOD = CIFAR-10 classes 6-9, MSP AUROC in points
    "5_ce": ClaimRule(
        "5_ce",
        "EFR improves CE's near-OOD detection (MSP AUROC; λ selected on validation top-1)",
        "ce_sel",
        "ce",
        "near_auroc",
        Rule("superior", effect=1.0),
    ),
    "5_ul": ClaimRule(
        "5_ul",
        "EFR improves UL+PAL's near-OOD detection (MSP AUROC; λ selected on validation top-1)",
        "ul_pal_sel",
        "ul_pal",
        "near_auroc",
        Rule("superior", effect=1.0),
    ),
}


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The outcome of one :class:`ClaimRule` on measured values, with its evidence."""

    claim: str
    outcome: str
    diff: PairedDiff
    guard_outcome: str | None
    guard_diff: PairedDiff | None
    text: str


def judge(cr: ClaimRule, values: Mapping[str, Mapping[str, Mapping[int, float]]]) -> Verdict:
    """Applies ``cr`` to ``values[role][metric] = {seed: value in points}``.

    The claim holds only if its rule holds and its guard (if any) does not fail; it fails if
    the rule fails; otherwise it is inconclusive (or pending without paired seeds). A missing
    role or metric counts as no seeds.
    """

    def get(role: str, metric: str) -> Mapping[int, float]:
        return values.get(role, {}).get(metric, {})

    a, b = get(cr.a, cr.metric), get(cr.b, cr.metric)
    diff = paired_difference(b, a) if cr.lower_is_better else paired_difference(a, b)
    outcome = decide(cr.rule, diff)
    g_out = g_diff = None
    if cr.guard is not None:
        g_metric, g_rule = cr.guard
        g_diff = paired_difference(get(cr.a, g_metric), get(cr.b, g_metric))
        g_out = decide(g_rule, g_diff)
        if outcome == "holds" and g_out == "fails":
            outcome = "fails"
        elif outcome == "holds" and g_out != "holds":
            outcome = "inconclusive"
    sign = f"{cr.b} − {cr.a}" if cr.lower_is_better else f"{cr.a} − {cr.b}"
    text = f"{cr.claim}: {sign} {cr.metric} = {diff.text()} → {outcome}"
    if g_diff is not None:
        text += f" (guard {cr.guard[0]}: {g_diff.text()} → {g_out})"
    return Verdict(cr.claim, outcome, diff, g_out, g_diff, text)
