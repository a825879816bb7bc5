"""Fig. 5: regularized GD at the critical weight decay λ = λ*(γ) = (1+γ)/(C√N), γ sweep
{0, 0.1, 0.01, 0.001, 1/99}, η = 0.1, s = 1.

Panels: (a) accuracy, (b) ‖H(t) − H̄‖, (c) ‖W(t) − W̄‖ with (H̄, W̄) the Corollary 5 limit,
(d) ‖H‖, (e) ‖W‖. For γ = 0.1 > 2/(C−2) the E2− mode dominates and the iterates do not converge
to (H̄, W̄) (‖Z‖ still grows: λ*(γ) only balances the E1+ eigenvalue).
"""

from configs.dynamics.common import base_config


def get_config():
    c = base_config()
    c.figure = "fig5_critical_gamma"
    c.title = "Fig. 5: λ = λ*(γ), γ sweep"
    c.critical_weight_decay = True
    c.sweep_field = "gamma"
    c.sweep_values = (0.0, 0.1, 0.01, 0.001, 1.0 / 99.0)
    c.sweep_labels = ("γ=0", "γ=0.1", "γ=0.01", "γ=0.001", "γ=1/99")
    c.panels = ("accuracy", "dist_H_limit", "dist_W_limit", "norm_H", "norm_W")
    c.log_panels = ("dist_H_limit", "dist_W_limit", "norm_H", "norm_W")
    return c
