"""ul_jax: the unhinged loss, its layer-peeled dynamics, and prototype-anchored training in JAX.

Layers (docs/ARCHITECTURE.md; each imports only the ones above it, checked by
``tests/test_architecture.py``):

  losses      -- unhinged, cross-entropy, MSE, multiclass hinge, adjusted sample-margin losses.
  prototypes  -- simplex-ETF and optimized (log-sum-exp) class prototypes.
  ufm         -- the layer-peeled (unconstrained features) model: GD simulators and closed forms.
  io          -- atomic text/JSON writes.
  objectives  -- CE/UL training objectives, EFR, RLR, SGD + cosine optimizer, Theorem-6 EFR target.
  models      -- Flax ResNets with linear / PAL / FNPAL heads.
  metrics     -- accuracy, ECE, OOD scores, neural-collapse metrics, streaming accumulators, plots.
  data        -- dataset registry, sources, OOD sets, long-tailed subsets, augmentation, batching.
  config      -- the config schema (one field table), dotted get/set, the config-file loader.
  train       -- setup, the sharded train step, the loop, checkpoints, work directories, writers.
  eval        -- the evaluation job (accuracy, calibration, OOD, neural collapse) and its reports.
  bench       -- benchmarks of the layer-peeled workload, the train step and the input pipeline.
  ufm_figures -- the paper's numerical figures (Figs. 1, 4-9) as vmapped sweeps.
  paper       -- this paper's report: reproduction suites as data, runner, claims, figures, docs.
"""

__version__ = "0.1.0"
