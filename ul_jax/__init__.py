"""ul_jax: the unhinged loss, its layer-peeled dynamics, and prototype-anchored training in JAX.

Submodules:
  losses      -- unhinged, cross-entropy, MSE, multiclass hinge, adjusted sample-margin losses.
  prototypes  -- simplex-ETF and optimized (log-sum-exp) class prototypes.
  ufm         -- the layer-peeled (unconstrained features) model: GD simulators and closed forms.
"""

__version__ = "0.1.0"
