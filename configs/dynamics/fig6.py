"""Fig. 6: learning-rate sweep η ∈ {0.001, 0.01, 0.1, 0.2, 0.5} at γ = 1/(C−1), λ = λ*, s = 1.

Panels: ‖H(t) − H̄‖ and ‖W(t) − W̄‖ (Corollary 5 limit): larger η converges faster.
"""

from configs.dynamics.common import base_config


def get_config():
    c = base_config()
    c.figure = "fig6_learning_rate"
    c.title = "Fig. 6: learning-rate sweep at λ = λ*"
    c.gamma = 1.0 / 99.0
    c.critical_weight_decay = True
    c.sweep_field = "lr"
    c.sweep_values = (0.001, 0.01, 0.1, 0.2, 0.5)
    c.sweep_labels = ("η=0.001", "η=0.01", "η=0.1", "η=0.2", "η=0.5")
    c.panels = ("accuracy", "dist_H_limit", "dist_W_limit")
    c.log_panels = ("dist_H_limit", "dist_W_limit")
    return c
