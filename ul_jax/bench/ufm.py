"""The layer-peeled-model benchmark (``python -m launch.bench ufm``); speed is measured here,
never in tests."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from ul_jax.bench import best_time


def ufm_benchmark(fig1_config, steps: int = 50_000, dtype: str = "float64") -> dict:
    """Fig. 1 workload end to end; closed-form curve vs simulation; dense autodiff vs structured
    gradients (per GD step). Returns the numbers (seconds, microseconds and ratios)."""
    from ul_jax import ufm, ufm_figures
    from ul_jax.losses import unhinged_loss

    out: dict = {
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "dtype": dtype,
        "steps": steps,
    }

    # 1. the Fig. 1 workload end to end (5 γ × steps GD, metrics every 100 steps, + closed form)
    cfg = fig1_config
    cfg.steps, cfg.dtype = steps, dtype
    t0 = time.perf_counter()
    result = ufm_figures.run(cfg)
    out["fig1_end_to_end_s"] = time.perf_counter() - t0
    out["fig1_timing"] = result["timing"]
    out["fig1_growth_max_rel_error"] = max(r["rel_error"] for r in result["growth"])

    # 2. a 500-point closed-form curve vs simulating the same 500 points (one γ, metrics = ‖Z‖)
    p, c, n = 512, 100, 10
    with jax.enable_x64(dtype == "float64"):
        dt = jnp.float64 if dtype == "float64" else jnp.float32
        kh, kw = jax.random.split(jax.random.PRNGKey(0))
        h0 = jax.random.normal(kh, (p, c * n), dt)
        w0 = jax.random.normal(kw, (p, c), dt)
        b0 = jnp.zeros((c,), dt)
        every = steps // 500
        norm = lambda h, w, b: {"norm_Z": jnp.sqrt(jnp.sum(h**2) + jnp.sum(w**2))}
        record_steps = jnp.arange(1, 501) * every

        @jax.jit
        def closed_curve(h0, w0, b0):
            def at(k):
                return norm(*ufm.gd_closed_form(h0, w0, b0, k, 0.1, gamma=1 / 99))["norm_Z"]

            return jax.lax.map(at, record_steps)

        @jax.jit
        def simulated_curve(h0, w0, b0):
            lrs = jnp.full((steps,), 0.1, dt)
            return ufm.gradient_descent(
                h0, w0, b0, lrs, gamma=1 / 99, record_every=every, metrics_fn=norm
            )[1]["norm_Z"]

        t_closed = best_time(closed_curve, h0, w0, b0)
        t_sim = best_time(simulated_curve, h0, w0, b0, repeats=1)
        out["closed_curve_500_s"] = t_closed
        out["simulated_curve_s"] = t_sim
        out["simulated_over_closed"] = t_sim / t_closed

        # 3. one GD step: dense autodiff of the loss vs the structured gradients
        labels = jnp.repeat(jnp.arange(c), n)

        def dense_loss(h, w, b):  # what a straightforward autograd implementation computes
            return jnp.mean(unhinged_loss(h.T @ w + b, labels, 1 / 99))

        def dense_step(carry, _):
            h, w, b = carry
            gh, gw, gb = jax.grad(dense_loss, argnums=(0, 1, 2))(h, w, b)
            return (h - 0.1 * gh, w - 0.1 * gw, b - 0.1 * gb), None

        def structured_step(carry, _):
            h, w, b = carry
            gh, gw, gb = ufm.grads(h, w, b, 1 / 99)
            return (h - 0.1 * gh, w - 0.1 * gw, b - 0.1 * gb), None

        k = 200
        run_dense = jax.jit(lambda z: jax.lax.scan(dense_step, z, None, length=k)[0])
        run_struct = jax.jit(lambda z: jax.lax.scan(structured_step, z, None, length=k)[0])
        t_dense = best_time(run_dense, (h0, w0, b0)) / k
        t_struct = best_time(run_struct, (h0, w0, b0)) / k
        out["dense_autodiff_step_us"] = t_dense * 1e6
        out["structured_grad_step_us"] = t_struct * 1e6
        out["dense_over_structured"] = t_dense / t_struct
    return out
