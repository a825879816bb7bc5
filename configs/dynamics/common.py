"""Shared defaults of the layer-peeled figure configs (Appendix C.1 of the paper)."""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    """p=512, C=100, N=10, N(0,1) init of H0 and W0, b0 = 0, plain GD on the free variables."""
    c = ml_collections.ConfigDict()
    c.figure = ""  # name of the PNG/JSON written to out_dir
    c.title = ""
    c.kind = "unconstrained"  # "unconstrained" (H, W, b free) or "spherical" (eq. 19, W fixed)
    c.feature_dim = 512  # p
    c.num_classes = 100  # C
    c.num_per_class = 10  # N
    c.seed = 0
    c.init_scale = 1.0  # std of the N(0, σ²) init of H0 and W0
    c.steps = 50_000
    c.record_every = 100
    c.dtype = "float64"  # float32 overflows ‖Z‖² for the fast-growing E2− mode (γ=0.05)
    # base hyper-parameters; one of them is swept
    c.lr = 0.1  # η₂ (W, b); H uses s·η₂
    c.s = 1.0
    c.gamma = 1.0 / 99.0
    c.weight_decay = 0.0  # λ₁ = λ₂ = λ (a swept value may be the string "critical")
    c.critical_weight_decay = False  # True: λ = λ*(γ) = (1+γ)/(C√N) of Corollary 5, for each γ
    c.rescaled = False  # spherical case: rescaled learning rate
    c.sweep_field = "gamma"  # gamma | lr | s | weight_decay | rescaled_lr (spherical)
    c.sweep_values = (1.0 / 99.0,)
    c.sweep_labels = ()  # optional legend labels (defaults to the values)
    c.closed_form = True  # overlay the exact closed form (dashed)
    c.panels = ("loss", "accuracy", "dist_direction", "norm_Z")
    c.log_panels = ("norm_Z",)  # panels drawn with a log y-axis
    c.out_dir = "figures"
    return c
