"""Fig. 4: weight-decay sweep λ₁ = λ₂ = λ ∈ {1e-5, 1e-4, 1e-3, 5e-3, λ*}, γ = 1/(C−1), η = 0.1, s = 1.

Panels: (a) log‖W(t)‖ (grows iff λ < λ*), (b) ‖W(t) − P‖ with P the W-part of Π1+ Z0
(Corollary 5: → 0 at λ = λ*), (c) ‖H(t) − W(t)⊗1_Nᵀ/√N‖ / ‖Z(t)‖ (alignment of features with
their prototypes, the same for every λ).
"""

from configs.dynamics.common import base_config


def get_config():
    c = base_config()
    c.figure = "fig4_weight_decay"
    c.title = "Fig. 4: weight-decay sweep (γ = 1/99, s = 1)"
    c.gamma = 1.0 / 99.0
    c.sweep_field = "weight_decay"
    c.sweep_values = (1e-5, 1e-4, 1e-3, 5e-3, "critical")
    c.sweep_labels = ("λ=1e-5", "λ=1e-4", "λ=1e-3", "λ=5e-3", "λ=λ*")
    c.panels = ("log_norm_W", "dist_W_P", "hw_gap_rel")
    c.log_panels = ("dist_W_P", "hw_gap_rel")
    return c
