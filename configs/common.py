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
``ce_efr``          CE + explicit feature regularization, λ = 1e-5 (Fig. 3, Table 6) read as
                    eq. 11's (λ/2)Σ_n‖h_n‖² over the n training images (``dataset_sum``)
``ul_pal_efr``      UL-PAL + EFR, λ = 1e-6 (Table 2), read the same way
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

Fields: every field's type, allowed values, meaning and whether a resume may change it is in the
schema table ``ul_jax/config.py`` (``FIELDS``; printed by ``python -m launch.train --config_help``);
this file holds only the defaults (``None`` fields are typed placeholders, overridable from the
command line). A new field: a row there, its default here.
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
    c.data.train_per_class = 0  # k > 0: at most k images of the largest class (n_max)
    c.data.augment = "crop_flip"
    c.data.crop_padding = 4
    c.data.num_threads = config_dict.placeholder(int)
    c.data.num_workers = 0

    c.model = ConfigDict()
    c.model.arch = "resnet18"
    c.model.stem = "cifar"
    c.model.final_relu = False
    c.model.width_multiplier = 1.0
    c.model.dtype = "float32"
    c.model.norm_impl = "auto"  # BatchNorm: fused on CPU, flax elsewhere (ul_jax.layers)

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
    # how efr_weight is read (ul_jax/config.py): batch_sum | per_example | dataset_sum (eq. 11)
    c.objective.efr_convention = "batch_sum"
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
    c.eval_train_split = False  # also evaluate the un-augmented train images (train_eval/*)
    c.group_grad_every = 0  # steps between per-group trunk-gradient shares (0: off)
    c.checkpoint_every = 0
    c.keep_checkpoints = 3
    c.tensorboard = True
    c.debug_nonfinite_at_step = -1
    c.profile_steps = config_dict.placeholder(tuple)  # (first, count): steps to profile
    c.deterministic_ops = False  # GPU: --xla_gpu_deterministic_ops (ul_jax/train/precision.py)
    c.restart = False
    return c


def apply_variant(c: ConfigDict, variant: str | None) -> ConfigDict:
    """Sets loss / head / EFR / RLR of ``variant`` (see the module docstring) on ``c``."""
    if variant not in VARIANTS:
        raise ValueError(f"config variant must be one of {VARIANTS}; got {variant!r}")
    c.variant = variant
    loss, head = {
        "ce": ("ce", "linear"),
        "ul": ("ul", "linear"),
        "ul_pal": ("ul", "pal"),
        "ul_fnpal": ("ul", "fnpal"),
        "ul_fnpal_rlr": ("ul", "fnpal"),
        "ce_efr": ("ce", "linear"),
        "ul_pal_efr": ("ul", "pal"),
    }[variant]
    c.objective.loss = loss
    c.head.kind = head
    c.head.bias = head == "linear"  # PAL/FNPAL: no bias (module docstring)
    # App. C.2: PAL/FNPAL remove the ReLU before the classifier; the linear-head runs keep it.
    c.model.final_relu = head == "linear"
    c.objective.rlr = variant == "ul_fnpal_rlr"
    c.objective.efr_weight = {"ce_efr": CE_EFR_WEIGHT, "ul_pal_efr": UL_EFR_WEIGHT}.get(
        variant, 0.0
    )
    # the paper's λ as printed, read as eq. 11's data-set sum (docs/REPRODUCTION.md: read as a
    # batch sum it never engages); a config that states a batch-sum λ_b sets batch_sum itself
    if variant in ("ce_efr", "ul_pal_efr"):
        c.objective.efr_convention = "dataset_sum"
    return c


def parse_arg(arg: str | None, default: str) -> str:
    """The variant named by ``get_config``'s argument (``None`` or empty: ``default``)."""
    return arg.strip() if arg else default
