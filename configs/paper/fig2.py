"""Fig. 2 (and Figs. 12–14 at the default weight decay): validation accuracy of CE, UL+PAL,
UL+FNPAL and UL+FNPAL+RLR on CIFAR-10 (ResNet-18, 200 epochs), CIFAR-100 (ResNet-34, 200 epochs)
and ImageNet-100 (ResNet-50, 100 epochs); ``*`` curves (EFR) via ``ce_efr`` / ``ul_pal_efr``.

    python -m launch.train --config configs/paper/fig2.py:cifar10,ul_fnpal_rlr --workdir runs/f2

Argument ``<dataset>,<variant>`` (default ``cifar10,ul_pal``). The settings are those of the
dataset configs ``configs/{cifar10,cifar100,imagenet100}.py``, unchanged.
"""

from configs import cifar10, cifar100, imagenet100
from configs.paper import choose, split_arg

DATASETS = {"cifar10": cifar10, "cifar100": cifar100, "imagenet100": imagenet100}
VARIANTS = ("ce", "ul_pal", "ul_fnpal", "ul_fnpal_rlr", "ce_efr", "ul_pal_efr")
ARGS = tuple(f"{d},{v}" for d in DATASETS for v in VARIANTS)


def get_config(arg=None):
    pos, kw = split_arg(arg, "cifar10,ul_pal")
    if len(pos) != 2 or kw:
        raise ValueError(f"fig2 config argument is '<dataset>,<variant>'; got {arg!r}")
    dataset = choose(pos[0], DATASETS, "fig2 dataset")
    variant = choose(pos[1], VARIANTS, "fig2 variant")
    c = DATASETS[dataset].get_config(variant)
    c.experiment = f"fig2:{dataset},{variant}"
    return c
