"""CIFAR-100, ResNet-34, 200 epochs, SGD(0.9) lr 0.1 cosine, wd 5e-4, batch 256 (App. C.2;
Fig. 2, Fig. 13, Table 6).

Data: ``source="tfds"`` (``cifar100``; needs a prepared tfds data_dir or network — CIFAR-100 is
not available offline on the project machines); an ImageFolder archive works with
``--config.data.source=image_folder --config.data.data_dir=DIR``.

    python -m launch.train --config configs/cifar100.py:ul_fnpal_rlr --workdir workdirs/c100_fnpal_rlr

Variants: see ``configs/common.py`` (default ``ul_pal``).
"""

from configs import common


def get_config(arg=None):
    c = common.base_config()
    c.data.name = "cifar100"
    c.data.source = "tfds"
    c.model.arch = "resnet34"
    c.num_epochs = 200
    return common.apply_variant(c, common.parse_arg(arg, "ul_pal"))
