"""Long-tailed CIFAR-100 (LDAM-DRW profile), ResNet-34, 200 epochs (App. C.3, Table 2, Table 5).

Train split subsampled with imbalance ratio ``data.imbalance_ratio`` (default 100,
``imbalance_kind`` exp | step); balanced test set. Data from tfds (not available offline here).

    python -m launch.train --config configs/cifar100_lt.py:ce_efr --workdir workdirs/c100lt_ce_efr \
        --config.data.imbalance_ratio=10

Variants: see ``configs/common.py`` (default ``ul_pal``).
"""

from configs import common


def get_config(arg=None):
    c = common.base_config()
    c.data.name = "cifar100"
    c.data.source = "tfds"
    c.data.imbalance_ratio = 100.0
    c.data.imbalance_kind = "exp"
    c.model.arch = "resnet34"
    c.num_epochs = 200
    return common.apply_variant(c, common.parse_arg(arg, "ul_pal"))
