"""The figure pipeline (configs/dynamics → ul_jax.ufm_figures → JSON + PNG) on tiny problems."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from configs.dynamics import fig1, fig4, fig5, fig9
from ul_jax import ufm_figures

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny(cfg, steps=400, every=20):
    cfg.feature_dim, cfg.num_classes, cfg.num_per_class = 8, 5, 3
    cfg.steps, cfg.record_every = steps, every
    return cfg


def test_fig1_sim_matches_closed_form_and_growth_rate():
    cfg = _tiny(fig1.get_config(), steps=6000, every=100)
    cfg.lr = 0.5
    res = ufm_figures.run(cfg)
    assert res["steps"][0] == 0 and res["steps"][-1] == 6000
    for k in ("loss", "accuracy", "norm_Z", "dist_direction"):
        sim, closed = np.asarray(res["sim"][k]), np.asarray(res["closed"][k])
        assert sim.shape == (5, 61)
        np.testing.assert_allclose(sim, closed, rtol=1e-9, atol=1e-9)
    # the measured late growth of ‖Z‖ matches log ρ(T) (tiny problem: E-modes separate quickly)
    for row in res["growth"]:
        assert row["rel_error"] < 1e-3, row
    # γ = 0.05 < 2/(C−2) = 2/3 here, so every curve converges to Corollary 3's direction
    # except γ = 0 (E2+ ties with E1+ and keeps its share).
    # (rate ∝ γ: γ = 0.001 is still on its way after 6,000 steps).
    dist = np.asarray(res["sim"]["dist_direction"])
    assert np.all(dist[1:, -1] < 0.2 * dist[1:, 0])
    assert np.all(dist[[1, 2, 4], -1] < 1e-3)
    assert dist[0, -1] > 1e-3


def test_fig1_growth_rate_prediction_is_not_vacuous():
    """If the measured ‖Z‖ curve is perturbed, the reported relative error exposes it."""
    cfg = _tiny(fig1.get_config(), steps=2000, every=100)
    params = ufm_figures.sweep_parameters(cfg)
    sig1 = (1 + params["gamma"][0]) / (5 * math.sqrt(3))  # σ₁ of the smallest γ, by hand
    steps = np.arange(0, 2001, 100)
    true = np.exp(np.log1p(cfg.lr * sig1) * steps)[None].repeat(5, 0)
    rows = ufm_figures.growth_rates(cfg, params, true)
    assert rows[0]["rel_error"] < 1e-9
    rows = ufm_figures.growth_rates(cfg, params, true * np.exp(5e-3 * steps)[None])
    assert rows[0]["rel_error"] > 0.1


def test_weight_decay_sweep_threshold_behaviour():
    cfg = _tiny(fig4.get_config(), steps=4000, every=200)
    cfg.lr, cfg.gamma = 0.5, 0.25  # γ = 1/(C−1) for C = 5, as the paper's figure (σ₂ = 0)
    cfg.sweep_values = (0.0, "critical", 0.3)
    cfg.sweep_labels = ("0", "crit", "0.3")
    res = ufm_figures.run(cfg)
    lam_star = (1 + 0.25) / (5 * math.sqrt(3))
    assert res["params"]["weight_decay"][1] == pytest.approx(lam_star)
    log_w = np.asarray(res["sim"]["log_norm_W"])
    assert log_w[0, -1] > log_w[0, 0] + 1  # below λ*: grows
    assert log_w[2, -1] < log_w[2, 0] - 1  # above λ*: shrinks
    dist = np.asarray(res["sim"]["dist_W_P"])
    assert dist[1, -1] < 1e-6  # at λ*: W → P (Corollary 5, s = 1)


def test_critical_sweep_over_gamma_uses_each_gammas_lambda_star():
    cfg = _tiny(fig5.get_config(), steps=200, every=100)
    params = ufm_figures.sweep_parameters(cfg)
    expected = [(1 + g) / (5 * math.sqrt(3)) for g in params["gamma"]]
    np.testing.assert_allclose(params["weight_decay"], expected)


def test_spherical_figure_rescaled_is_faster():
    cfg = _tiny(fig9.get_config(), steps=600, every=50)
    cfg.sweep_values, cfg.sweep_labels = (5.0, 20.0), ("5", "20")
    res = ufm_figures.run(cfg)
    plain = np.asarray(res["plain"]["dist_sphere"])
    resc = np.asarray(res["rescaled"]["dist_sphere"])
    assert np.all(np.diff(np.asarray(res["plain"]["norm_H"]), axis=1) >= -1e-9)  # Theorem 7
    assert np.all(resc[:, -1] < plain[:, -1])


def test_save_writes_json_and_png(tmp_path):
    cfg = _tiny(fig1.get_config(), steps=100, every=50)
    cfg.out_dir = str(tmp_path)
    res = ufm_figures.run(cfg)
    json_path, png_path = ufm_figures.save(res, cfg.out_dir)
    with open(json_path) as f:
        loaded = json.load(f)
    assert loaded["labels"] == list(cfg.sweep_labels)
    with open(png_path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("sweep_field", "momentum", "sweep_field"),
        ("sweep_values", (0.1, "huge"), "weight_decay"),
        ("record_every", 7, "record_every"),
        ("kind", "cubic", "kind"),
        ("dtype", "float16", "dtype"),
    ],
)
def test_bad_figure_configs(field, value, match):
    cfg = _tiny(fig1.get_config(), steps=100, every=50)
    setattr(cfg, field, value)
    if field == "sweep_values":
        cfg.sweep_field, cfg.sweep_labels = "weight_decay", ()
    with pytest.raises(ValueError, match=match):
        ufm_figures.run(cfg)


def test_cli_runs(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.dynamics",
            "--config",
            "configs/dynamics/fig1.py",
            "--config.feature_dim=6",
            "--config.num_classes=4",
            "--config.num_per_class=2",
            "--config.steps=200",
            "--config.record_every=100",
            f"--config.out_dir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "predicted" in out.stdout
    assert (tmp_path / "fig1_unconstrained.png").exists()
