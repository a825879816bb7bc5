"""Long-tailed CIFAR-10 (LDAM-DRW profile), ResNet-18, 200 epochs (App. C.3, Table 2, Table 4).

The *train* split is subsampled to ``n_c = n_max · ρ^(−c/(C−1))`` (``imbalance_kind="exp"``) or a
step profile (``"step"``), imbalance ratio ρ = ``data.imbalance_ratio`` (default 100); the test
set stays balanced. Sweep the table with overrides, e.g.

    python -m launch.train --config configs/cifar10_lt.py:ul_pal_efr --workdir workdirs/c10lt50 \
        --config.data.imbalance_ratio=50 --config.objective.efr_weight=5e-7

The EFR λ is the paper's as printed, read as eq. 11's sum over the training set
(``objective.efr_convention = dataset_sum``, converted at setup with the LT set's size).
Variants: see ``configs/common.py`` (default ``ul_pal``). Note an epoch is shorter here
(ρ = 100 keeps 12,406 of 50,000 images), so eval/checkpoint "once per epoch" is more frequent.
"""

from configs import common


def get_config(arg=None):
    c = common.base_config()
    c.data.name = "cifar10"
    c.data.source = "image_folder"
    c.data.imbalance_ratio = 100.0
    c.data.imbalance_kind = "exp"
    c.model.arch = "resnet18"
    c.num_epochs = 200
    return common.apply_variant(c, common.parse_arg(arg, "ul_pal"))
