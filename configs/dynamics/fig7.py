"""Fig. 7: weight-decay sweep λ ∈ {1e-5, 1e-4, 1e-3, 5e-3, λ*} at γ = 1/(C−1), η₂ = 0.1, with
unequal rates s = η₁/η₂ = 0.5.

The OCR'd caption of Fig. 7 repeats Fig. 4's panels but refers to the general limit
H̄ = H₁₊ + rH₁₋, W̄ = W₁₊ − rW₁₋ (r = (1−s)/(1+s)), which differs from Fig. 4 only when s ≠ 1; we
show that case (s = 0.5, r = 1/3) so the figure exercises the general Corollary 5 limit.
Panels: log‖W‖, ‖W(t) − W̄‖, ‖H(t) − H̄‖.
"""

from configs.dynamics.common import base_config


def get_config():
    c = base_config()
    c.figure = "fig7_weight_decay_s05"
    c.title = "Fig. 7: weight-decay sweep with s = 0.5 (Corollary 5 limit with r = 1/3)"
    c.gamma = 1.0 / 99.0
    c.s = 0.5
    c.sweep_field = "weight_decay"
    c.sweep_values = (1e-5, 1e-4, 1e-3, 5e-3, "critical")
    c.sweep_labels = ("λ=1e-5", "λ=1e-4", "λ=1e-3", "λ=5e-3", "λ=λ*")
    c.panels = ("log_norm_W", "dist_W_limit", "dist_H_limit")
    c.log_panels = ("dist_W_limit", "dist_H_limit")
    return c
