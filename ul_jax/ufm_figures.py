"""Numerical experiments of the layer-peeled model (paper Figs. 1, 4–9, Appendix C.1).

One config describes one figure: a base problem (p, C, N, seed, γ, η₂, s, λ) and one swept field.
The whole sweep runs as one ``jax.vmap`` of :func:`ul_jax.ufm.gradient_descent` (simulated GD)
and one of the exact discrete closed form :func:`ul_jax.ufm.gd_closed_form`, both evaluated on the
same metrics at the same record steps. ``launch.dynamics`` is a thin CLI around :func:`run` and
:func:`plot`.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ul_jax import ufm
from ul_jax.prototypes import simplex_etf

Array = jax.Array
SWEEP_FIELDS = ("gamma", "lr", "s", "weight_decay")

__all__ = ["sweep_parameters", "make_problem", "run", "plot", "save", "growth_rates"]


# --------------------------------------------------------------------------------------------
# problem and parameters
# --------------------------------------------------------------------------------------------
def _resolve_weight_decay(
    value, gamma: float, num_classes: int, num_per_class: int, critical: bool = False
) -> float:
    if critical:
        value = "critical"
    if isinstance(value, str):
        if value != "critical":
            raise ValueError(
                f"config.weight_decay must be a number >= 0 or 'critical'; got {value!r}"
            )
        # Corollary 5's λ* = σ₁ = (1+γ)/(C√N), as the paper's figures use it. For γ > 2/(C−2) the
        # true threshold is |σ₂| (ufm.critical_weight_decay), and at σ₁ the E2− mode still grows.
        with jax.enable_x64(True):  # λ* must be exact to float64: a float32 λ* drifts ‖Z‖
            return float(ufm.eigenvalues(num_classes, num_per_class, gamma)[0])
    value = float(value)
    if value < 0:
        raise ValueError(f"config.weight_decay must be >= 0; got {value}")
    return value


def sweep_parameters(config) -> dict[str, np.ndarray]:
    """Per-sweep-value hyper-parameters ``{gamma, lr, s, weight_decay}``, each ``(n_sweep,)``.

    ``config.critical_weight_decay = True`` (or a swept weight-decay value ``'critical'``) resolves to Corollary 5's λ*(γ) = (1+γ)/(C√N) for that γ (the
    true threshold only for γ ≤ 2/(C−2); see :func:`ul_jax.ufm.critical_weight_decay`).
    """
    field = config.sweep_field
    if field not in SWEEP_FIELDS:
        raise ValueError(f"config.sweep_field must be one of {SWEEP_FIELDS}; got {field!r}")
    values = tuple(config.sweep_values)
    if not values:
        raise ValueError("config.sweep_values is empty")
    out: dict[str, list[float]] = {k: [] for k in SWEEP_FIELDS}
    for v in values:
        p = {
            "gamma": config.gamma,
            "lr": config.lr,
            "s": config.s,
            "weight_decay": config.weight_decay,
        }
        p[field] = v
        gamma = float(p["gamma"])
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0; got {gamma} (config.{field} sweep)")
        if float(p["lr"]) <= 0 or float(p["s"]) <= 0:
            raise ValueError(f"lr and s must be > 0; got lr={p['lr']}, s={p['s']}")
        out["gamma"].append(gamma)
        out["lr"].append(float(p["lr"]))
        out["s"].append(float(p["s"]))
        out["weight_decay"].append(
            _resolve_weight_decay(
                p["weight_decay"],
                gamma,
                config.num_classes,
                config.num_per_class,
                critical=config.critical_weight_decay and field != "weight_decay",
            )
        )
    return {k: np.asarray(v) for k, v in out.items()}


def make_problem(key: Array, config, dtype) -> tuple[Array, Array, Array]:
    """Random init ``H0 (p, CN) ~ σN(0,1)``, ``W0 (p, C) ~ σN(0,1)``, ``b0 = 0`` (Appendix C.1);
    for the spherical case ``W0`` is a fixed unit-norm simplex ETF."""
    p, c, n = config.feature_dim, config.num_classes, config.num_per_class
    k_h, k_w = jax.random.split(key)
    h0 = config.init_scale * jax.random.normal(k_h, (p, c * n), dtype)
    if config.kind == "spherical":
        w0 = simplex_etf(k_w, c, p, dtype=dtype)
    else:
        w0 = config.init_scale * jax.random.normal(k_w, (p, c), dtype)
    return h0, w0, jnp.zeros((c,), dtype)


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------
def _references(h0: Array, w0: Array, gamma, s, num_per_class: int) -> dict[str, Array]:
    """Limits the figures measure distances to, from the initial point (Corollaries 3 and 5)."""
    hbar, wbar = ufm.limit_direction(h0, w0, gamma=gamma, s=s, e1_only=True)  # Corollary 3's Z̄
    nbar = jnp.sqrt(jnp.sum(hbar**2) + jnp.sum(wbar**2))
    proj = ufm.projections(h0, w0, num_per_class)
    h1p, w1p = proj["E1+"]
    h1m, w1m = proj["E1-"]
    r = (1.0 - s) / (1.0 + s)
    return {
        "dir_H": hbar / nbar,
        "dir_W": wbar / nbar,
        "crit_H": h1p + r * h1m,
        "crit_W": w1p - r * w1m,
        "P": w1p,
    }


def _accuracy(h: Array, w: Array, b: Array, num_per_class: int) -> Array:
    c = w.shape[1]
    logits = w.T @ h + b[:, None]  # (C, CN)
    labels = jnp.repeat(jnp.arange(c), num_per_class)
    return jnp.mean(jnp.argmax(logits, axis=0) == labels)


def _fro(x: Array) -> Array:
    return jnp.sqrt(jnp.sum(jnp.square(x)))


def unconstrained_metrics(h, w, b, ref, gamma, num_per_class: int) -> dict[str, Array]:
    """Scalars plotted in Figs. 1 and 4–8."""
    n_h, n_w = _fro(h), _fro(w)
    n_z = jnp.sqrt(n_h**2 + n_w**2)
    w_rep = jnp.repeat(w, num_per_class, axis=1) / math.sqrt(num_per_class)
    return {
        "loss": ufm.loss(h, w, b, gamma),
        "accuracy": _accuracy(h, w, b, num_per_class),
        "norm_H": n_h,
        "norm_W": n_w,
        "norm_Z": n_z,
        "log_norm_W": jnp.log(n_w),
        "dist_direction": jnp.sqrt(
            jnp.sum((h / n_z - ref["dir_H"]) ** 2) + jnp.sum((w / n_z - ref["dir_W"]) ** 2)
        ),
        "dist_H_limit": _fro(h - ref["crit_H"]),
        "dist_W_limit": _fro(w - ref["crit_W"]),
        "dist_W_P": _fro(w - ref["P"]),
        "hw_gap_rel": _fro(h - w_rep) / n_z,
    }


def spherical_metrics(h, w, num_per_class: int) -> dict[str, Array]:
    """Scalars plotted in Fig. 9: ‖H‖, ‖Ĥ − Ŵ(I⊗1ᵀ)‖ (column-normalized), accuracy."""
    h_hat = h / jnp.linalg.norm(h, axis=0, keepdims=True)
    w_hat = w / jnp.linalg.norm(w, axis=0, keepdims=True)
    return {
        "norm_H": _fro(h),
        "dist_sphere": _fro(h_hat - jnp.repeat(w_hat, num_per_class, axis=1)),
        "accuracy": _accuracy(h, w, jnp.zeros((w.shape[1],), h.dtype), num_per_class),
    }


# --------------------------------------------------------------------------------------------
# running a sweep
# --------------------------------------------------------------------------------------------
def _record_steps(config) -> np.ndarray:
    if config.steps < 1 or config.record_every < 1 or config.steps % config.record_every:
        raise ValueError(
            f"config.steps={config.steps} must be a positive multiple of "
            f"config.record_every={config.record_every}"
        )
    return np.arange(0, config.steps + 1, config.record_every)


def _unconstrained_sweep(config, params, h0, w0, b0, closed: bool):
    n = config.num_per_class
    steps = _record_steps(config)

    # (H0, W0, b0) are jit arguments, not closed-over constants: XLA would constant-fold them.
    def one(gamma, lr, s, lam, h0, w0, b0):
        ref = _references(h0, w0, gamma, s, n)
        metrics_fn = lambda h, w, b: unconstrained_metrics(h, w, b, ref, gamma, n)
        lrs = jnp.full((config.steps,), lr, h0.dtype)
        _, traj = ufm.gradient_descent(
            h0,
            w0,
            b0,
            lrs,
            gamma=gamma,
            s=s,
            weight_decay=(lam, lam),
            record_every=config.record_every,
            metrics_fn=metrics_fn,
        )
        return traj

    def one_closed(gamma, lr, s, lam, h0, w0, b0):
        ref = _references(h0, w0, gamma, s, n)

        def at(k):
            h, w, b = ufm.gd_closed_form(
                h0, w0, b0, k, lr, gamma=gamma, s=s, weight_decay=(lam, lam)
            )
            return unconstrained_metrics(h, w, b, ref, gamma, n)

        return jax.lax.map(at, jnp.asarray(steps))

    args = tuple(jnp.asarray(params[k], h0.dtype) for k in ("gamma", "lr", "s", "weight_decay"))
    t0 = time.perf_counter()
    sweep = lambda f: jax.jit(jax.vmap(f, in_axes=(0, 0, 0, 0, None, None, None)))
    sim = jax.block_until_ready(sweep(one)(*args, h0, w0, b0))
    t_sim = time.perf_counter() - t0
    out = {"sim": sim, "time_sim_s": t_sim}
    if closed:
        t0 = time.perf_counter()
        out["closed"] = jax.block_until_ready(sweep(one_closed)(*args, h0, w0, b0))
        out["time_closed_s"] = time.perf_counter() - t0
    return out


def _spherical_sweep(config, params, h0, w0):
    n = config.num_per_class
    out = {}
    t0 = time.perf_counter()
    for rescaled in (False, True):

        def one(gamma, lr, h0, w0):
            metrics_fn = lambda h: spherical_metrics(h, w0, n)
            lrs = jnp.full((config.steps,), lr, h0.dtype)
            _, traj = ufm.spherical_descent(
                h0,
                w0,
                lrs,
                gamma=gamma,
                rescaled=rescaled,
                record_every=config.record_every,
                metrics_fn=metrics_fn,
            )
            return traj

        args = (jnp.asarray(params["gamma"], h0.dtype), jnp.asarray(params["lr"], h0.dtype))
        out["rescaled" if rescaled else "plain"] = jax.block_until_ready(
            jax.jit(jax.vmap(one, in_axes=(0, 0, None, None)))(*args, h0, w0)
        )
    out["time_sim_s"] = time.perf_counter() - t0
    return out


def growth_rates(config, params, norm_z: np.ndarray, window_steps: int = 2000) -> list[dict]:
    """Late per-step log-growth of ‖Z‖ (measured over the last ``window_steps``) next to the
    eigenvalue prediction ``log ρ(T)``, ρ the spectral radius of the GD transition matrices
    ``T_σ = [[1−η₁λ, η₁σ], [η₂σ, 1−η₂λ]]`` over σ ∈ {±σ₁, ±σ₂} and ``1 − η₁λ`` (E3)."""
    steps = _record_steps(config)
    m = max(1, min(len(steps) - 1, window_steps // config.record_every))
    rows = []
    for i in range(len(params["gamma"])):
        gamma, lr, s, lam = (float(params[k][i]) for k in ("gamma", "lr", "s", "weight_decay"))
        with jax.enable_x64(True):
            sig1, sig2 = (
                float(x) for x in ufm.eigenvalues(config.num_classes, config.num_per_class, gamma)
            )
        radius = abs(1 - s * lr * lam)
        for sig in (sig1, -sig1, sig2, -sig2):
            t = np.array([[1 - s * lr * lam, s * lr * sig], [lr * sig, 1 - lr * lam]])
            radius = max(radius, float(np.max(np.abs(np.linalg.eigvals(t)))))
        a, b = float(norm_z[i, -1 - m]), float(norm_z[i, -1])
        if a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b):
            measured = (math.log(b) - math.log(a)) / (m * config.record_every)
        else:  # under- or overflowed: nothing to measure
            measured = float("nan")
        predicted = math.log(radius)
        # relative to the scale of the per-step rates (η·σ₁), so a predicted rate of 0 (λ = λ*)
        # is judged by how close the measurement is to 0 on that scale
        rel = abs(measured - predicted) / max(abs(predicted), lr * sig1 * max(s, 1.0))
        rows.append(
            {
                "gamma": gamma,
                "lr": lr,
                "s": s,
                "weight_decay": lam,
                "measured": measured,
                "predicted": predicted,
                "rel_error": rel,
            }
        )
    return rows


def run(config) -> dict[str, Any]:
    """Runs one figure's sweep; returns a JSON-able dict of curves (lists) and timings."""
    if config.kind not in ("unconstrained", "spherical"):
        raise ValueError(f"config.kind must be 'unconstrained' or 'spherical'; got {config.kind!r}")
    if config.dtype not in ("float32", "float64"):
        raise ValueError(f"config.dtype must be 'float32' or 'float64'; got {config.dtype!r}")
    params = sweep_parameters(config)
    labels = tuple(config.sweep_labels) or tuple(str(v) for v in config.sweep_values)
    if len(labels) != len(params["gamma"]):
        raise ValueError(
            f"config.sweep_labels has {len(labels)} entries for {len(params['gamma'])} sweep values"
        )
    with jax.enable_x64(config.dtype == "float64"):
        dtype = jnp.float64 if config.dtype == "float64" else jnp.float32
        h0, w0, b0 = make_problem(jax.random.PRNGKey(config.seed), config, dtype)
        if config.kind == "spherical":
            raw = _spherical_sweep(config, params, h0, w0)
        else:
            raw = _unconstrained_sweep(config, params, h0, w0, b0, config.closed_form)
    to_list = lambda tree: jax.tree.map(lambda x: np.asarray(x).tolist(), tree)
    result: dict[str, Any] = {
        "figure": config.figure,
        "title": config.title,
        "kind": config.kind,
        "labels": list(labels),
        "params": {k: v.tolist() for k, v in params.items()},
        "steps": _record_steps(config).tolist(),
        "config": config.to_dict() if hasattr(config, "to_dict") else dict(config),
        "timing": {k: v for k, v in raw.items() if k.startswith("time_")},
    }
    for key in ("sim", "closed", "plain", "rescaled"):
        if key in raw:
            result[key] = to_list(raw[key])
    if config.kind == "unconstrained":
        result["growth"] = growth_rates(config, params, np.asarray(raw["sim"]["norm_Z"]))
        if "closed" in raw:
            result["max_rel_gap_closed_vs_sim"] = {
                k: float(
                    np.max(
                        np.abs(np.asarray(raw["sim"][k]) - np.asarray(raw["closed"][k]))
                        / np.maximum(np.abs(np.asarray(raw["closed"][k])), 1e-12)
                    )
                )
                for k in ("norm_Z", "norm_H", "norm_W")
            }
    return result


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------
_PANEL_TITLES = {
    "loss": "training loss",
    "accuracy": "training accuracy",
    "norm_Z": "‖Z(t)‖",
    "norm_H": "‖H(t)‖",
    "norm_W": "‖W(t)‖",
    "log_norm_W": "log ‖W(t)‖",
    "dist_direction": "‖Z/‖Z‖ − Z̄/‖Z̄‖‖",
    "dist_H_limit": "‖H(t) − H̄‖",
    "dist_W_limit": "‖W(t) − W̄‖",
    "dist_W_P": "‖W(t) − P‖",
    "hw_gap_rel": "‖H − W⊗1ᵀ/√N‖ / ‖Z‖",
    "dist_sphere": "‖Ĥ(t) − W(I⊗1ᵀ)‖",
}


def plot(result: dict[str, Any], path: str, panels=None, log_panels=()) -> None:
    """Writes the figure: one panel per metric, simulated GD solid, closed form dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = tuple(panels or result["config"]["panels"])
    groups = (
        [("plain", "plain η"), ("rescaled", "rescaled η")]
        if result["kind"] == "spherical"
        else [("sim", "")]
    )
    fig, axes = plt.subplots(
        len(groups), len(panels), squeeze=False, figsize=(4.2 * len(panels), 3.4 * len(groups))
    )
    steps = np.asarray(result["steps"])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for gi, (key, gname) in enumerate(groups):
        for pi, panel in enumerate(panels):
            ax = axes[gi, pi]
            for i, label in enumerate(result["labels"]):
                color = colors[i % len(colors)]
                ax.plot(steps, np.asarray(result[key][panel])[i], color=color, lw=1.5, label=label)
                if "closed" in result and key == "sim":
                    ax.plot(
                        steps,
                        np.asarray(result["closed"][panel])[i],
                        color="k",
                        lw=0.8,
                        ls="--",
                        alpha=0.8,
                    )
            if panel in log_panels:
                ax.set_yscale("log")
            elif panel == "loss":  # spans many orders of magnitude, with either sign
                ax.set_yscale("symlog", linthresh=1.0)
            title = _PANEL_TITLES.get(panel, panel)
            ax.set_title(f"{title} ({gname})" if gname else title, fontsize=10)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            if pi == 0:
                ax.legend(fontsize=7)
    suffix = " — solid: simulated GD, dashed: exact closed form" if "closed" in result else ""
    fig.suptitle(result["title"] + suffix, fontsize=11)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save(result: dict[str, Any], out_dir: str) -> tuple[str, str]:
    """Writes ``<figure>.json`` (curves) and ``<figure>.png``; returns both paths."""
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, result["figure"])
    tmp = base + ".json.tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, base + ".json")
    cfg = result["config"]
    plot(result, base + ".png", cfg["panels"], cfg.get("log_panels", ()))
    return base + ".json", base + ".png"
