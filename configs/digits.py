"""CPU demo: sklearn's real handwritten digits (1,347 train / 450 test, 16×16 RGB), ResNet-8.

Runs the whole training stack (sharded jit step, on-device pad-crop augmentation without flips,
cosine SGD, checkpoints, resume, metrics.jsonl, TensorBoard) in about 35 s on a 2-core CPU:

    python -m launch.train --config configs/digits.py --workdir /tmp/digits_demo

Measured (2-core AMD EPYC CPU, jax 0.10.2, default variant ``ul_pal``, seed 0): 300 steps
(30 epochs × 10 steps of 128), 34 s wall for the whole command (≈ 15 s of it start-up, data and
compilation; ≈ 1,700 img/s training), final test accuracy 98.4 % (443 / 450); the ``ce``
variant reaches 97.6 %. Chance is 10 %. Numbers are deterministic for a given machine and JAX
version; other CPUs may differ in the last digits.
"""

from configs import common


def get_config(arg=None):
    c = common.base_config()
    c.data.name = "digits"
    c.data.source = "digits"
    c.data.image_size = 16
    c.data.augment = "crop"  # digits are not mirror-symmetric: crops only
    c.data.crop_padding = 2
    c.model.arch = "resnet8"
    c.model.width_multiplier = 1.0
    c.batch_size = 128
    c.eval_batch_size = 256
    c.num_epochs = 30
    c.log_every = 10
    c.eval_every = 0  # every epoch (10 steps)
    c.checkpoint_every = 100
    c.keep_checkpoints = 2
    c = common.apply_variant(c, common.parse_arg(arg, "ul_pal"))
    c.objective.efr_convention = "batch_sum"  # the demo's λ is the batch-sum weight λ_b
    return c
