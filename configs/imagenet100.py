"""ImageNet-100 (labels 0..99 of tfds ``imagenet2012``), ResNet-50 with the ImageNet stem, 224×224
random-resized crops, 100 epochs, SGD(0.9) lr 0.1 cosine, wd 5e-4, batch 256 (App. C.2; Fig. 2,
Fig. 14).

Data: :func:`ul_jax.data.make_imagenet100_loader` streams tfds array_record files with grain (set
``--config.data.data_dir`` to the tfds data_dir holding a prepared ``imagenet2012``, see the
README's "ImageNet-100" for preparing it); crops and flips are done by the host loader
(``data.augment="none"``: normalize only on device), in ``--config.data.num_workers`` worker
processes if > 0. Not runnable on the project's CPU machines (no ImageNet there).

    python -m launch.train --config configs/imagenet100.py:ul_pal --workdir workdirs/in100_ul_pal

Variants: see ``configs/common.py`` (default ``ul_pal``).
"""

from configs import common


def get_config(arg=None):
    c = common.base_config()
    c.data.name = "imagenet100"
    c.data.source = "tfds"
    c.data.image_size = 224
    c.data.augment = "none"
    c.model.arch = "resnet50"
    c.model.stem = "imagenet"
    c.num_epochs = 100
    c.log_every = 100
    return common.apply_variant(c, common.parse_arg(arg, "ul_pal"))
