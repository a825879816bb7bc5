"""CIFAR-10, ResNet-18, 200 epochs, SGD(0.9) lr 0.1 cosine, wd 5e-4, batch 256 (App. C.2; Fig. 2,
Fig. 12, Fig. 19, Table 6).

Data: the offline ImageFolder copy ``cifar10.tar.gz`` (found under ``$UL_JAX_DATA_DIR`` or
``<repo>/../shared/data``); ``--config.data.source=tfds`` reads tfds instead. Standard pad-4 crop
+ horizontal flip on device.

    python -m launch.train --config configs/cifar10.py:ul_pal --workdir workdirs/c10_ul_pal
    python -m launch.train --config configs/cifar10.py:ul --workdir workdirs/c10_ul   # Fig. 19: NaN

Variants: see ``configs/common.py`` (default ``ul_pal``).
"""

from configs import common


def get_config(arg=None):
    c = common.base_config()
    c.data.name = "cifar10"
    c.data.source = "image_folder"
    c.model.arch = "resnet18"
    c.num_epochs = 200
    return common.apply_variant(c, common.parse_arg(arg, "ul_pal"))
