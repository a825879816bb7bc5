"""Fig. 1: unconstrained GD (eq. 5), γ ∈ {0, 0.05, 0.005, 0.001, 1/99}, η₁ = η₂ = 0.1, 50,000 steps.

Panels: (a) loss, (b) accuracy of argmax_c w_cᵀh + b_c, (c) ‖Z/‖Z‖ − Z̄/‖Z̄‖‖ with Z̄ of
Corollary 3, (d) ‖Z‖. Simulated GD solid, exact closed form dashed.
"""

from configs.dynamics.common import base_config


def get_config():
    c = base_config()
    c.figure = "fig1_unconstrained"
    c.title = "Fig. 1: unconstrained GD under the unhinged loss"
    c.sweep_field = "gamma"
    c.sweep_values = (0.0, 0.05, 0.005, 0.001, 1.0 / 99.0)
    c.sweep_labels = ("γ=0", "γ=0.05", "γ=0.005", "γ=0.001", "γ=1/99")
    c.panels = ("loss", "accuracy", "dist_direction", "norm_Z")
    c.log_panels = ("norm_Z", "dist_direction")
    return c
