"""CPU-scale versions of the paper's CIFAR-10 experiments (``configs/paper/``), for a 2-core CPU.

Argument ``<variant>,<data>[,lam=λ]``:

* variant: ``ce`` | ``ul`` (plain UL, linear head: Fig. 19) | ``ul_pal`` | ``ul_fnpal`` |
  ``ul_fnpal_rlr`` | ``ce_efr`` | ``ul_pal_efr``;
* data: ``full`` (CIFAR-10, 50,000 train images) | ``exp100`` / ``exp10`` / ``step100`` (long-tailed
  train split, ``configs/paper/table2.py``) | ``split`` (``cifar10_split_id``: classes 0–5, whose
  near-OOD set is classes 6–9).

What is scaled (everything else — SGD 0.9, lr 0.1 cosine to 0, weight decay 5e-4, crop+flip
augmentation, PAL/FNPAL heads, the λΣ‖h_i‖² EFR — is the paper's config, unchanged):

* model: ResNet-8 (CIFAR stem) at width ×0.5 (channels 8/16/32, feature dim p = 32 ≥ C − 1);
* batch 128 instead of 256, so the EFR sum over the batch gets λ × 256/128 (the same penalty per
  example relative to the batch-mean loss as the paper's λ at batch 256);
* a fixed budget of :data:`STEPS` = 1,200 steps (153,600 images: ≈ 3 epochs of the full set,
  ≈ 12 of CIFAR-10-LT ρ = 100) with the cosine schedule over those steps;
* ``ul`` (Fig. 19): constant lr 0.1 — the paper's divergence happens in the first 22 of 200
  cosine epochs, where the lr is still ≈ 0.1 — and logs every 10 steps;
* evaluation on the whole test set every 200 steps for the ``full`` runs (the accuracy curves of
  claim 2), otherwise only at the end; checkpoints every 200 steps (resumable), 2 kept.

    python -m launch.train --config configs/cpu/cifar10.py:ce_efr,exp100 --workdir runs/x
"""

from configs.paper import choose, fig2, fig19, split_arg, table2, table3

VARIANTS = ("ce", "ul", "ul_pal", "ul_fnpal", "ul_fnpal_rlr", "ce_efr", "ul_pal_efr")
DATA = ("full", "exp100", "exp10", "step100", "split")
STEPS = 1200
ARCH, WIDTH, BATCH = "resnet8", 0.5, 128
PAPER_BATCH = 256
CURVE_EVAL_EVERY = 200


def _paper_config(variant: str, data: str, lam_arg: str):
    if variant == "ul":
        if data != "full":
            raise ValueError("the plain-UL (Fig. 19) run is defined on the full CIFAR-10 only")
        return fig19.get_config("ul")
    if data == "full":
        return fig2.get_config(f"cifar10,{variant}")
    if data == "split":
        if variant not in table3.VARIANTS:
            raise ValueError(f"split runs take a variant of {table3.VARIANTS}; got {variant!r}")
        c = table3.get_config(f"{variant},cifar10{lam_arg}")
        c.data.name = "cifar10_split_id"
        return c
    if variant not in table2.VARIANTS:
        raise ValueError(f"{data} runs take a variant of {table2.VARIANTS}; got {variant!r}")
    return table2.get_config(f"{variant},{data}{lam_arg}")


def get_config(arg=None):
    pos, kw = split_arg(arg, "ul_pal,full")
    if len(pos) != 2:
        raise ValueError(f"cpu config argument is '<variant>,<data>[,lam=λ]'; got {arg!r}")
    variant = choose(pos[0], VARIANTS, "cpu variant")
    data = choose(pos[1], DATA, "cpu data")
    lam_arg = f",lam={kw.pop('lam')}" if "lam" in kw else ""
    if kw:
        raise ValueError(f"unknown config argument(s) {sorted(kw)}; only lam=λ is accepted")
    c = _paper_config(variant, data, lam_arg)
    c.model.arch = ARCH
    c.model.width_multiplier = WIDTH
    c.batch_size = BATCH
    c.eval_batch_size = 500
    c.objective.efr_weight = c.objective.efr_weight * PAPER_BATCH / BATCH
    c.num_train_steps = STEPS
    c.log_every = 10 if variant == "ul" else 20
    c.eval_every = CURVE_EVAL_EVERY if data == "full" else STEPS
    c.checkpoint_every = 200
    c.keep_checkpoints = 2
    c.tensorboard = False
    if variant == "ul":
        c.optimizer.schedule = "constant"
    c.experiment = f"cpu:{arg or 'ul_pal,full'}"
    return c
