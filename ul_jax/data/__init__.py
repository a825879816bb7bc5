"""Input pipeline: dataset sources, long-tailed subsets, augmentation, per-host sharding.

Modules:
  registry      -- the dataset table: classes, splits, sources, image size, streamed, OOD roles.
  sources       -- :func:`load_dataset` (tfds / image_folder / digits), OOD sets, class splits.
  ood           -- the OOD test sets (:data:`OOD_SETS`, from the registry plus uniform noise),
                   their loader :func:`load_ood_images` at a run's input size.
  image_folder  -- :func:`load_image_folder`: ImageFolder dirs and tar archives, cached decode.
  tfds_source   -- :func:`load_tfds`: ``tfds.data_source`` (no TensorFlow), ``tfds.load`` fallback.
  digits        -- sklearn's real handwritten digits as small RGB images (offline demo, far-OOD).
  long_tail     -- LDAM-DRW long-tailed counts and seeded subsets.
  augment       -- jit-able JAX CIFAR augmentation (pad-crop, flip, normalize) from explicit keys.
  transforms    -- host-side ImageNet transforms (random-resized-crop, resize + center crop).
  pipeline      -- batch layout over hosts/devices, resumable train order, padded eval, sharding.
  imagenet      -- ImageNet-100 (labels 0..99 of imagenet2012): grain loader, cached index.

Typical CIFAR use::

    train = load_dataset("cifar10", "train", source="image_folder")   # offline JPEG copy
    mean, std = channel_stats(train.images)
    layout = batch_layout(128)
    for step, batch in enumerate(train_batches(train.images, train.labels, layout, seed=0,
                                               start_step=k), start=k):
        batch = to_global_array(batch)                      # sharded over the "data" mesh
        x = cifar_train_transform(augment_key(0, step), batch["image"], mean, std)  # in jit
"""

from ul_jax.data.augment import (
    CIFAR_PADDING,
    augment_key,
    cifar_eval_transform,
    cifar_train_transform,
    crop_and_flip,
    normalize,
    random_crop_flip,
    sample_crop_flip,
)
from ul_jax.data.dataset import ArrayDataset, channel_stats, select_classes, split_validation
from ul_jax.data.digits import load_digits
from ul_jax.data.image_folder import load_image_folder
from ul_jax.data.imagenet import (
    ImageNetLoader,
    imagenet100_indices,
    make_imagenet100_loader,
    open_imagenet2012,
)
from ul_jax.data.long_tail import long_tailed_counts, long_tailed_indices, make_long_tailed
from ul_jax.data.ood import OOD_SETS, OODSet, check_ood_names, load_ood_images, resize_images
from ul_jax.data.pipeline import (
    BatchLayout,
    batch_layout,
    data_mesh,
    data_sharding,
    epoch_permutation,
    eval_batches,
    eval_index_batches,
    num_eval_batches,
    prefetch_to_device,
    steps_per_epoch,
    to_global_array,
    train_batches,
    train_index_batches,
)
from ul_jax.data.registry import (
    DATASETS,
    NUM_CLASSES,
    TRAIN_DATASETS,
    DatasetSpec,
    OODRole,
    dataset_spec,
    train_dataset_spec,
)
from ul_jax.data.sources import load_dataset, resolve_image_folder
from ul_jax.data.tfds_source import DatasetFormatError, load_tfds
from ul_jax.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    imagenet_eval_transform,
    imagenet_train_transform,
)

__all__ = [
    "ArrayDataset",
    "BatchLayout",
    "CIFAR_PADDING",
    "DATASETS",
    "DatasetSpec",
    "NUM_CLASSES",
    "OODRole",
    "OODSet",
    "OOD_SETS",
    "TRAIN_DATASETS",
    "dataset_spec",
    "train_dataset_spec",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageNetLoader",
    "augment_key",
    "batch_layout",
    "channel_stats",
    "check_ood_names",
    "cifar_eval_transform",
    "cifar_train_transform",
    "crop_and_flip",
    "data_mesh",
    "data_sharding",
    "epoch_permutation",
    "eval_batches",
    "eval_index_batches",
    "imagenet100_indices",
    "imagenet_eval_transform",
    "imagenet_train_transform",
    "load_dataset",
    "make_imagenet100_loader",
    "load_digits",
    "load_image_folder",
    "load_ood_images",
    "load_tfds",
    "DatasetFormatError",
    "long_tailed_counts",
    "long_tailed_indices",
    "make_long_tailed",
    "normalize",
    "num_eval_batches",
    "open_imagenet2012",
    "prefetch_to_device",
    "random_crop_flip",
    "resize_images",
    "resolve_image_folder",
    "sample_crop_flip",
    "select_classes",
    "split_validation",
    "steps_per_epoch",
    "to_global_array",
    "train_batches",
    "train_index_batches",
]
