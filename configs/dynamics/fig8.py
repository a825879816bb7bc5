"""Fig. 8: scale sweep s = η₁/η₂ ∈ {0.01, 0.05, 0.1, 0.5, 1.0} at η₂ = 0.5, γ = 1/(C−1), λ = λ*.

Panels: ‖H(t) − H̄‖ and ‖W(t) − W̄‖ with the s-dependent Corollary 5 limit: larger s converges
faster.
"""

from configs.dynamics.common import base_config


def get_config():
    c = base_config()
    c.figure = "fig8_scale"
    c.title = "Fig. 8: scale sweep s = η₁/η₂ at λ = λ*"
    c.gamma = 1.0 / 99.0
    c.lr = 0.5
    c.critical_weight_decay = True
    c.sweep_field = "s"
    c.sweep_values = (0.01, 0.05, 0.1, 0.5, 1.0)
    c.sweep_labels = ("s=0.01", "s=0.05", "s=0.1", "s=0.5", "s=1")
    c.panels = ("accuracy", "dist_H_limit", "dist_W_limit")
    c.log_panels = ("dist_H_limit", "dist_W_limit")
    return c
