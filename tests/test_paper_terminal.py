"""The terminal-phase report (ul_jax/paper/terminal.py) on synthetic run results: selection on
the selection seed only, the roles' paired values, and the verdicts that follow."""

import pytest

from ul_jax.paper import terminal
from ul_jax.paper.suites import SUITES, TP_B100_RUNS, TP_SETTINGS, tp_runs


def _entry(top1, val_top1, val_nll=1.0, ece=0.1, train=1.0, evals=(0.3, 0.5)):
    return {
        "status": "complete",
        "summary": {"top1": top1, "ece": ece},
        "curves": {
            "step": [1, 2],
            "eval/accuracy": [*evals[:-1], top1] if len(evals) > 1 else [top1],
            "val/accuracy": [None, val_top1],
            "val/loss": [None, val_nll],
            "train_eval/accuracy": [0.5, train],
            "eval/feature_norm": [1.0, 2.0],
        },
    }


def _res(spec):
    """``spec[run_name] = {seed: entry}``; every run of the b100 suite present."""
    return {
        r.name: {"seeds": {str(k): e for k, e in spec.get(r.name, {}).items()}}
        for r in TP_B100_RUNS
    }


def _fill_grid(spec, runs, families=("ce", "ul_pal"), val_top1=0.2):
    """Seed-0 entries, worse on validation than any the test sets, for every run of the λ
    grids in ``families`` that ``spec`` leaves out: a selection needs its whole grid."""
    for r in runs:
        if r.variant.removesuffix("_efr") in families and 0 not in spec.get(r.name, {}):
            spec.setdefault(r.name, {})[0] = _entry(0.2, val_top1, val_nll=9.0)
    return spec


def _name(variant, lam=None, s=None):
    n = f"tp_b100_{variant}"
    if lam:
        n += f"_lam{lam}"
    if s:
        n += f"_s{s}"
    return n


def test_suite_settings_and_runs():
    assert SUITES["cpu_tp_b100"][0] == TP_B100_RUNS == tp_runs("b100")
    st = TP_SETTINGS["b100"]
    assert st.steps == 1563  # 200 epochs of 1,000 images at batch 128, rounded up
    for r in TP_B100_RUNS:
        assert r.overrides["eval_train_split"] is True
        assert r.overrides["num_train_steps"] == 1563
        assert r.overrides["data.train_per_class"] == 100
        assert r.overrides["data.validation_per_class"] == 500
        assert r.claims == ("tp_b100",)
    names = [r.name for r in TP_B100_RUNS]
    assert len(set(names)) == len(names)


def test_selection_uses_the_selection_seed_only():
    lo, hi = _name("ul_pal_efr", "5e-5"), _name("ul_pal_efr", "2.5e-4")
    spec = {
        # seed 0: λ = 2.5e-4 is better on validation; seed 1: λ = 5e-5 is much better
        lo: {0: _entry(0.50, 0.50), 1: _entry(0.90, 0.90)},
        hi: {0: _entry(0.55, 0.55), 1: _entry(0.10, 0.10)},
        _name("ul_pal"): {0: _entry(0.40, 0.40)},
    }
    roles = terminal.roles(_res(spec), TP_B100_RUNS, seed=0)
    assert roles["ul_pal_sel"].name == hi
    assert terminal.roles(_res(spec), TP_B100_RUNS, seed=1)["ul_pal_sel"].name == lo
    # calibration: the lowest validation NLL, λ = 0 a candidate
    spec = {
        _name("ce"): {0: _entry(0.5, 0.6, val_nll=2.0)},
        _name("ce_efr", "1e-4"): {0: _entry(0.5, 0.5, val_nll=1.5)},
        _name("ce_efr", "5e-4"): {0: _entry(0.5, 0.4, val_nll=1.7)},
    }
    roles = terminal.roles(_res(spec), TP_B100_RUNS, seed=0)
    assert roles["ce_efr_nll"].name == _name("ce_efr", "1e-4")
    assert roles["ce_sel"].name == _name("ce")  # by validation top-1


def test_section_verdicts_follow_the_numbers():
    sel = _name("ul_pal_efr", "2.5e-4")
    ce, ce_efr = _name("ce"), _name("ce_efr", "1e-4")
    spec = {
        ce: {k: _entry(0.60 + 0.01 * k, 0.6, val_nll=2.0, ece=0.30) for k in range(3)},
        ce_efr: {
            k: _entry(0.605 + 0.01 * k, 0.59, val_nll=1.5, ece=0.18 + 0.01 * k) for k in range(3)
        },
        _name("ul_pal"): {k: _entry(0.45 + 0.005 * k, 0.45, ece=0.6) for k in range(3)},
        sel: {k: _entry(0.601 + 0.01 * k, 0.61, ece=0.2) for k in range(3)},
    }
    # a selection among part of a λ grid is no selection: the claims that use it wait
    _, verdict = terminal.terminal_section(_res(spec), TP_B100_RUNS, [0, 1, 2])
    assert "2a pending" in verdict and "4 pending" in verdict and "2a_vanilla fails" in verdict
    assert "selection pending: grid incomplete on seed 0 (CE 2 of 4, UL+PAL 2 of 4)" in verdict
    _fill_grid(spec, TP_B100_RUNS)
    table, verdict = terminal.terminal_section(_res(spec), TP_B100_RUNS, [0, 1, 2])
    assert "selection pending" not in verdict
    assert "terminal phase reached" in verdict
    assert "2a holds" in verdict and "2a_vanilla fails" in verdict and "4 holds" in verdict
    assert "4_ul holds" in verdict and "2b pending" in verdict
    # flip: the EFR model is now the over-confident one → claim 4 fails
    for k in range(3):
        spec[ce_efr][k]["summary"]["ece"] = 0.40
    _, verdict = terminal.terminal_section(_res(spec), TP_B100_RUNS, [0, 1, 2])
    assert "4 fails" in verdict
    # CE does not fit its training set: the verdict says so
    for k in range(3):
        spec[ce][k]["curves"]["train_eval/accuracy"][-1] = 0.9
    _, verdict = terminal.terminal_section(_res(spec), TP_B100_RUNS, [0, 1, 2])
    assert "terminal phase NOT reached" in verdict


def test_section_pending_without_runs():
    table, verdict = terminal.terminal_section(_res({}), TP_B100_RUNS, [0])
    assert "not run" in table and verdict == terminal.PENDING


@pytest.mark.parametrize("key", sorted(terminal.SECTIONS))
def test_every_setting_has_a_section_and_figure(key):
    assert key in terminal.FIGURES


def test_budget_section_selects_per_budget():
    from ul_jax.paper.suites import TP_BUDGET_RUNS, TP_SETTINGS

    assert {r.overrides["num_train_steps"] for r in TP_BUDGET_RUNS} == {196, 391}
    assert TP_SETTINGS["lt100"].num_train == 1236 and TP_SETTINGS["lt10"].num_train == 2040
    spec = {
        "tpb25_b100_ce": {0: _entry(0.40, 0.40)},
        "tpb25_b100_ul_pal": {0: _entry(0.30, 0.30)},
        "tpb25_b100_ul_pal_efr_lam1.25e-3": {0: _entry(0.38, 0.39)},
        "tp_b100_ce": {0: _entry(0.50, 0.50)},
        "tp_b100_ul_pal_efr_lam5e-5": {0: _entry(0.49, 0.52)},
        "tp_b100_ul_pal_efr_lam2.5e-4": {0: _entry(0.51, 0.51)},
    }
    res = {
        r.name: {"seeds": {str(k): e for k, e in spec.get(r.name, {}).items()}}
        for r in (*TP_B100_RUNS, *TP_BUDGET_RUNS)
    }
    table, verdict = terminal.budget_section(res, TP_BUDGET_RUNS, [0])
    assert "25 epochs: λ_b = 0.00125 (gap -2.00 pts)" in verdict
    assert "200 epochs: λ_b = 5e-05 (gap -1.00 pts)" in verdict
    assert "50 epochs" not in verdict  # nothing finished at that budget
    assert table.count("\n") == 4  # header, rule, three budgets


def test_group_grad_figure_from_logged_shares(tmp_path):
    from ul_jax.paper.suites import TP_LT_RUNS

    lt = [r for r in TP_LT_RUNS if r.setting == "lt100"]
    assert all(r.overrides["group_grad_every"] == 100 for r in lt)
    e = _entry(0.5, 0.5)
    e["curves"]["train/trunk_grad_share"] = [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1]]
    e["curves"]["train/group_batch_share"] = [[0.7, 0.2, 0.1], [0.7, 0.2, 0.1]]
    res = {r.name: {"seeds": {}} for r in lt}
    res["tp_lt100_ce"]["seeds"]["0"] = e
    name = terminal.fig_group_grad(res, lt, tmp_path / "g")
    assert name == "g.png" and (tmp_path / "g.png").stat().st_size > 0
    assert terminal.fig_group_grad({r.name: {"seeds": {}} for r in lt}, lt, tmp_path / "h") is None


def test_split_section_judges_claim5_and_shows_every_ood_score():
    """Class split: claim 5 on the near-OOD MSP AUROC; the OOD table shows each score on both
    OOD sets and the paired EFR − λ = 0 AUROC differences (here energy: +5 pts every seed)."""
    from ul_jax.paper.suites import TP_SPLIT_RUNS

    def ood(msp, energy):
        return {
            name: {
                "msp": {"auroc": msp, "fpr95": 0.9},
                "energy": {"auroc": energy, "fpr95": 0.8},
                "feature_norm": {"auroc": 0.5, "fpr95": 0.95},
            }
            for name in (terminal.NEAR_OOD, terminal.FAR_OOD)
        }

    def e(top1, val, msp, energy, k):
        x = _entry(top1, val)
        x["summary"]["ood"] = ood(msp + 0.001 * k, energy + 0.002 * k)
        return x

    ul, ce = "tp_split100_ul_pal", "tp_split100_ce"
    assert {ul, ce} <= {r.name for r in TP_SPLIT_RUNS}
    sel = next(r.name for r in TP_SPLIT_RUNS if r.variant == "ul_pal_efr")
    spec = {
        ce: {k: e(0.5, 0.5, 0.50, 0.52, k) for k in range(3)},
        ul: {k: e(0.5, 0.49, 0.50, 0.50, k) for k in range(3)},
        sel: {k: e(0.52, 0.55, 0.60 + 0.01 * k, 0.55, k) for k in range(3)},
    }
    _fill_grid(spec, TP_SPLIT_RUNS)
    res = {
        r.name: {"seeds": {str(k): v for k, v in spec.get(r.name, {}).items()}}
        for r in TP_SPLIT_RUNS
    }
    table, verdict = terminal.terminal_section(res, TP_SPLIT_RUNS, [0, 1, 2])
    assert "5_ul holds" in verdict and "5_ce fails" in verdict  # CE: validation keeps λ = 0
    assert "near-OOD (classes 6–9): AUROC (MSP / energy / ‖h‖, %)" in table
    assert "| 50.1 / 52.2 / 50.0 | 90.0 / 80.0 / 95.0 | 50.1 / 52.2 / 50.0 |" in table  # CE
    # UL+PAL+EFR − UL+PAL: energy +5.00 pts on every seed (zero spread), both OOD sets
    assert table.count("+5.00 pts, [+5.00, +5.00] (n = 3)") == 2
    # flip: EFR now lowers the near-OOD MSP AUROC → claim 5_ul fails
    for k in range(3):
        spec[sel][k]["summary"]["ood"][terminal.NEAR_OOD]["msp"]["auroc"] = 0.40
    _, verdict = terminal.terminal_section(res, TP_SPLIT_RUNS, [0, 1, 2])
    assert "5_ul fails" in verdict
