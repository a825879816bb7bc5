"""Shared defaults and variants of the classification training configs (Sec. 4, Appendix C.2).

Every dataset config (``configs/cifar10.py`` ...) is ``get_config(arg)`` with ``arg`` a variant
name, selected on the command line as ``--config configs/cifar10.py:ul_pal``:

==================  ===========================================================================
variant             what
==================  ===========================================================================
``ce``              cross-entropy, learnable linear head (the baseline)
``ul``              plain unhinged loss with a learnable linear head: unstable, feature and
                    prototype norms blow up and the run ends in NaN (Fig. 19)
``ul_pal``          unhinged loss, PAL: head fixed to a simplex ETF (norm ``head.scale``),
                    no bias, no ReLU before the head (Sec. 4.1, App. C.2; why no bias: below)
``ul_fnpal``        unhinged loss, FNPAL: logits ``s·ŵ_cᵀĥ`` with unit ETF prototypes
``ul_fnpal_rlr``    FNPAL + rescaled learning rate (per-example weight sg(‖h_i‖), Sec. 4.3)
``ce_efr``          CE + explicit feature regularization λΣ‖h_i‖², λ = 1e-5 (Fig. 3, Table 6)
``ul_pal_efr``      UL-PAL + EFR, λ = 1e-6 (Table 2)
==================  ===========================================================================

Why the PAL/FNPAL variants have no bias: the batch-mean unhinged loss is *linear* in the bias,
``(1/n) Σ_i L_γ = … + Σ_c b_c (γ − (1+γ) π_c)`` with ``π_c`` the fraction of class ``c`` in the
data, so ``∂/∂b_c = γ − (1+γ)π_c``: zero for every class exactly when the classes are balanced
and γ = 1/(C−1) (the paper's σ₂ = 0 case, where the bias never moves), otherwise a constant
push that makes the objective unbounded below in ``b`` alone. On long-tailed data a learnable
bias therefore drifts linearly (held only by weight decay at ``b_c* = −(γ − (1+γ)π_c)/wd``,
≈ 670 for the head class of CIFAR-10-LT ρ = 100) and swamps the fixed-norm logits ``w_cᵀh``:
a CPU run measured ``b`` = (173, 81, 26, −8, …, −55) after 1,200 steps and 19 % accuracy with
the tail classes never predicted (``docs/REPRODUCTION.md``). The paper's Table 2 UL numbers
cannot come from that objective, and PAL as in Zhou et al. (2022) fixes the classifier; so
``head.bias`` is False for PAL/FNPAL (it stays overridable; ``validate_config`` warns for UL with
a bias on imbalanced data). The linear-head variants (``ce``, ``ce_efr``, plain ``ul``) keep it.

Fields (``None`` fields are typed placeholders, overridable from the command line):

* ``seed``: model init (``jax.random.key(seed, impl="rbg")``, see
  ``ul_jax.train.step.init_key``), train order (epoch permutations) and augmentation keys
  ``augment_key(seed, step)``: the whole run is a function of the config.
* ``data``: ``name`` (cifar10, cifar100, digits, cifar10_split_id, imagenet100), ``source``
  (image_folder, tfds, digits), ``data_dir``, ``image_size`` (digits size / optional resize /
  ImageNet crop), ``imbalance_ratio`` and ``imbalance_kind`` (exp | step; long-tailed *train*
  split), ``seed`` (digits split, long-tailed subset and validation split),
  ``validation_per_class`` (0 = none; k > 0 holds k images of every class out of the train
  split as a balanced validation set, evaluated as ``val/*`` next to ``eval/*``, the test set;
  a long-tailed subset is drawn from the rest), ``augment`` (crop_flip | crop | none,
  on device), ``crop_padding``, ``num_threads`` (ImageNet decode threads).
* ``model``: ``arch`` (resnet8/20/18/34/50), ``stem`` (cifar | imagenet), ``final_relu``,
  ``width_multiplier``, ``dtype`` (float32 | bfloat16 compute; parameters stay float32).
* ``head``: ``kind`` (linear | pal | fnpal), ``scale`` (PAL prototype norm, FNPAL logit scale s,
  linear init scale; the paper does not state s, 1.0 here), ``bias``, ``init`` (linear head:
  random | etf), ``prototype_seed``.
* ``objective``: ``loss`` (ce | ul | mse | hinge), ``gamma`` (UL γ; None = 1/(C−1)),
  ``efr_weight`` (λ of the EFR *sum* over the batch, see ``ul_jax/objectives.py``), ``rlr``.
* ``optimizer``: ``lr`` 0.1, ``momentum`` 0.9, ``nesterov``, ``weight_decay`` 5e-4 (coupled L2),
  ``weight_decay_on`` (all | kernels), ``schedule`` (cosine to 0 | constant),
  ``warmup_epochs``.
* loop: ``batch_size`` 256 (global, over all devices), ``eval_batch_size``, ``num_epochs``,
  ``num_train_steps`` (-1: ``num_epochs × ⌊n_train / batch_size⌋``; else overrides),
  ``log_every`` (steps), ``eval_every`` and ``checkpoint_every`` (steps; 0 = once per epoch),
  ``keep_checkpoints``, ``tensorboard``, ``debug_nonfinite_at_step`` (test hook: an infinite
  learning rate at that step; -1 = off).
* ``restart`` (default False): allow starting from step 0 in a work directory that holds an
  earlier run's files but *no usable checkpoint* (only damaged checkpoints, a different
  ``config.json``, or ``metrics.jsonl`` lines past the first checkpoint step); those files move
  to ``WORKDIR/previous_<time>/``. Without it such a work directory is an error. A usable
  checkpoint is always resumed, restart or not (a requeued job keeps its progress); use a new
  ``--workdir`` to start over. See ``docs/RELIABILITY.md``.
"""

from ml_collections import ConfigDict, config_dict

VARIANTS = ("ce", "ul", "ul_pal", "ul_fnpal", "ul_fnpal_rlr", "ce_efr", "ul_pal_efr")

CE_EFR_WEIGHT = 1e-5
UL_EFR_WEIGHT = 1e-6


def base_config() -> ConfigDict:
  """CIFAR-10 / ResNet-18 / UL-PAL defaults of Appendix C.2 (dataset files override)."""
  c = ConfigDict()
  c.seed = 0

  c.data = ConfigDict()
  c.data.name = "cifar10"
  c.data.source = "image_folder"
  c.data.data_dir = config_dict.placeholder(str)
  c.data.image_size = config_dict.placeholder(int)
  c.data.imbalance_ratio = config_dict.placeholder(float)
  c.data.imbalance_kind = "exp"
  c.data.seed = 0
  c.data.validation_per_class = 0
  c.data.augment = "crop_flip"
  c.data.crop_padding = 4
  c.data.num_threads = config_dict.placeholder(int)

  c.model = ConfigDict()
  c.model.arch = "resnet18"
  c.model.stem = "cifar"
  c.model.final_relu = False
  c.model.width_multiplier = 1.0
  c.model.dtype = "float32"

  c.head = ConfigDict()
  c.head.kind = "pal"
  c.head.scale = 1.0
  c.head.bias = True
  c.head.init = "random"
  c.head.prototype_seed = 0

  c.objective = ConfigDict()
  c.objective.loss = "ul"
  c.objective.gamma = config_dict.placeholder(float)
  c.objective.efr_weight = 0.0
  c.objective.rlr = False

  c.optimizer = ConfigDict()
  c.optimizer.lr = 0.1
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = False
  c.optimizer.weight_decay = 5e-4
  c.optimizer.weight_decay_on = "all"
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_epochs = 0.0

  c.batch_size = 256
  c.eval_batch_size = 256
  c.num_epochs = 200
  c.num_train_steps = -1
  c.log_every = 50
  c.eval_every = 0
  c.checkpoint_every = 0
  c.keep_checkpoints = 3
  c.tensorboard = True
  c.debug_nonfinite_at_step = -1
  c.restart = False
  return c


def apply_variant(c: ConfigDict, variant: str | None) -> ConfigDict:
  """Sets loss / head / EFR / RLR of ``variant`` (see the module docstring) on ``c``."""
  if variant not in VARIANTS:
    raise ValueError(f"config variant must be one of {VARIANTS}; got {variant!r}")
  c.variant = variant
  loss, head = {
      "ce": ("ce", "linear"), "ul": ("ul", "linear"), "ul_pal": ("ul", "pal"),
      "ul_fnpal": ("ul", "fnpal"), "ul_fnpal_rlr": ("ul", "fnpal"), "ce_efr": ("ce", "linear"),
      "ul_pal_efr": ("ul", "pal"),
  }[variant]
  c.objective.loss = loss
  c.head.kind = head
  c.head.bias = head == "linear"            # PAL/FNPAL: no bias (module docstring)
  # App. C.2: PAL/FNPAL remove the ReLU before the classifier; the linear-head runs keep it.
  c.model.final_relu = head == "linear"
  c.objective.rlr = variant == "ul_fnpal_rlr"
  c.objective.efr_weight = {"ce_efr": CE_EFR_WEIGHT, "ul_pal_efr": UL_EFR_WEIGHT}.get(variant, 0.0)
  return c


def parse_arg(arg: str | None, default: str) -> str:
  """The variant named by ``get_config``'s argument (``None`` or empty: ``default``)."""
  return arg.strip() if arg else default
