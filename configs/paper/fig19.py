"""Fig. 19: plain unhinged loss (eq. 1) with a learnable linear head, ResNet-18 on CIFAR-10,
weight decay 5e-4 (the caption), otherwise App. C.2. The paper's run shows NaN at epoch 22; the
training loop stops there with ``NonFiniteError`` (last good checkpoint intact) and
``metrics.jsonl`` holds the curves (train accuracy, feature norm, prototype norm ratio, min
prototype norm, min prototype angle), logged every 25 steps (≈ 8 points per epoch).

    python -m launch.train --config configs/paper/fig19.py --workdir runs/fig19
"""

from configs import cifar10

ARGS = ("ul",)


def get_config(arg=None):
    if arg not in (None, "", "ul"):
        raise ValueError(f"fig19 has the single variant 'ul'; got {arg!r}")
    c = cifar10.get_config("ul")
    c.optimizer.weight_decay = 5e-4
    c.log_every = 25
    c.experiment = "fig19:ul"
    return c
