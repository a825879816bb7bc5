"""Fig. 9: anchored prototypes on the sphere (eq. 18/19): W a fixed simplex ETF, features updated
by the normalized-feature gradient, η ∈ {0.1, 0.5, 1, 5, 10}, without (a–c) and with (d–f) the
rescaled learning rate.

Panels: ‖H(t)‖ (non-decreasing, Theorem 7), ‖Ĥ(t) − W(I_C⊗1_Nᵀ)‖ (column-normalized features vs
their prototypes; exponential decrease), accuracy.
"""

from configs.dynamics.common import base_config


def get_config():
    c = base_config()
    c.figure = "fig9_spherical"
    c.title = "Fig. 9: anchored spherical GD, plain vs rescaled learning rate"
    c.kind = "spherical"
    c.gamma = 1.0 / 99.0
    c.steps = 20_000
    c.closed_form = False  # Theorem 7 is a convergence statement, not a closed form
    c.sweep_field = "lr"
    c.sweep_values = (0.1, 0.5, 1.0, 5.0, 10.0)
    c.sweep_labels = ("η=0.1", "η=0.5", "η=1", "η=5", "η=10")
    c.panels = ("norm_H", "dist_sphere", "accuracy")
    c.log_panels = ("dist_sphere",)
    return c
