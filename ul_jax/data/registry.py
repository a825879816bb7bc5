"""The dataset registry: one table of every dataset the library knows, and lookups derived from it.

Each :class:`DatasetSpec` says how many classes a dataset has, its splits, the loaders
(``source``) that can serve it, the image side its loader yields by default, whether it is
streamed (too large for memory), whether a run may train on it, whether it is a class subset of
another dataset, and — through its :class:`OODRole` — whether it may serve as an OOD test set and
for which training sets it must not (it shares images or classes with them).

======================  =======  ===================  ====  ================================
name                    classes  sources              side  role
======================  =======  ===================  ====  ================================
``cifar10``             10       image_folder / tfds  32    train; far-OOD for other runs
``cifar100``            100      tfds / image_folder  32    train; near-OOD for CIFAR-10
``svhn_cropped``        10       tfds / image_folder  32    OOD only (the paper's OOD set)
``digits``              10       digits               16    train (offline demo)
``digits_far_ood``      10       digits               32    OOD only (SVHN stand-in)
``cifar10_split_id``    6        image_folder / tfds  32    train (CIFAR-10 classes 0–5)
``cifar10_split_near_ood``  4    image_folder / tfds  32    OOD only (CIFAR-10 classes 6–9)
``imagenet100``         100      tfds (streamed)      224   train (imagenet2012 labels 0–99)
======================  =======  ===================  ====  ================================

Adding a dataset: one :class:`DatasetSpec` entry here, plus its loader (``ul_jax.data.sources``
for in-memory sets: tfds and image-folder names work as they are; a class subset of a registered
set needs only ``base``/``classes``). The training config check (``data.name``), the loop, the
evaluation job and the OOD-set registry (:mod:`ul_jax.data.ood`) read this table.
"""

from __future__ import annotations

import dataclasses

__all__ = [
    "SOURCES",
    "OODRole",
    "DatasetSpec",
    "DATASETS",
    "NUM_CLASSES",
    "TRAIN_DATASETS",
    "dataset_spec",
    "train_dataset_spec",
    "num_classes",
    "allowed_sources",
    "eval_split",
    "default_image_size",
    "is_streamed",
]

# every loader ``load_dataset`` knows (the streamed ImageNet loader is tfds too)
SOURCES = ("tfds", "image_folder", "digits")


@dataclasses.dataclass(frozen=True)
class OODRole:
    """How a dataset serves as an OOD test set (see :mod:`ul_jax.data.ood`)."""

    description: str  # honest one-line name of what the images are
    split: str = "test"  # the split scored as OOD
    not_for: tuple[str, ...] = ()  # training sets (data.name) it shares images/classes with
    reason: str = ""  # why it must not be used with those
    follow_run_source: bool = False  # load it with the run's own data.source when allowed


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the registry."""

    name: str
    description: str
    num_classes: int
    splits: tuple[str, ...]
    sources: tuple[str, ...]  # loaders that can serve it, preferred (offline) first
    image_size: int  # side of the images its loader yields by default
    trainable: bool = True  # may be a run's data.name
    streamed: bool = False  # too large for memory: a streaming loader, no load_dataset
    eval_split: str = "test"  # the split the training loop evaluates on
    base: str | None = None  # a class subset of this registered dataset ...
    classes: tuple[int, ...] = ()  # ... keeping these classes, relabelled 0..len-1
    ood: OODRole | None = None  # set when it may serve as an OOD test set


_CIFAR10_ID_CLASSES = (0, 1, 2, 3, 4, 5)
_CIFAR10_NEAR_OOD_CLASSES = (6, 7, 8, 9)

DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        DatasetSpec(
            "cifar10",
            "CIFAR-10 (image_folder: <data_dir>/cifar10.tar.gz, the offline JPEG copy)",
            10,
            ("train", "test"),
            ("image_folder", "tfds"),
            32,
            ood=OODRole(
                "CIFAR-10 test split (10,000 natural images, 32x32): far-OOD for runs not trained on "
                "CIFAR-10 (e.g. the digits demo)",
                not_for=("cifar10", "cifar10_split_id"),
                reason="it contains the classes this run was trained on",
                follow_run_source=True,
            ),
        ),
        DatasetSpec(
            "cifar100",
            "CIFAR-100 (not available offline here)",
            100,
            ("train", "test"),
            ("tfds", "image_folder"),
            32,
            ood=OODRole(
                "CIFAR-100 test split (10,000 images, 32x32): near-OOD for CIFAR-10 runs",
                not_for=("cifar100",),
                reason="it is this run's own dataset",
            ),
        ),
        DatasetSpec(
            "svhn_cropped",
            "SVHN cropped digits (OOD test set; not offline here)",
            10,
            ("train", "test", "extra"),
            ("tfds", "image_folder"),
            32,
            trainable=False,
            ood=OODRole(
                "SVHN cropped digits, test split (tfds 'svhn_cropped', 26,032 images, 32x32): the "
                "paper's OOD set (Table 3, Table 6, Fig. 3)"
            ),
        ),
        DatasetSpec(
            "digits",
            "sklearn's real 8x8 handwritten digits, resized RGB, seeded stratified 75/25 "
            "train/test split",
            10,
            ("train", "test", "all"),
            ("digits",),
            16,
        ),
        DatasetSpec(
            "digits_far_ood",
            "all 1,797 sklearn digits as RGB: an offline far-OOD set for CIFAR-10 "
            "(digits, like SVHN — but not SVHN)",
            10,
            ("test", "all"),
            ("digits",),
            32,
            trainable=False,
            ood=OODRole(
                "all 1,797 sklearn handwritten digits as RGB: an offline far-OOD stand-in for SVHN "
                "(digits, like SVHN; not SVHN)",
                split="all",
                not_for=("digits",),
                reason="it holds every sklearn digit, including this run's own train and test "
                "images",
            ),
        ),
        DatasetSpec(
            "cifar10_split_id",
            "CIFAR-10 classes 0-5 (airplane ... dog), labels 0-5: the "
            "in-distribution half of a near-OOD class split",
            6,
            ("train", "test"),
            ("image_folder", "tfds"),
            32,
            base="cifar10",
            classes=_CIFAR10_ID_CLASSES,
        ),
        DatasetSpec(
            "cifar10_split_near_ood",
            "CIFAR-10 classes 6-9 (frog, horse, ship, truck), relabelled 0-3: the near-OOD half",
            4,
            ("train", "test"),
            ("image_folder", "tfds"),
            32,
            trainable=False,
            base="cifar10",
            classes=_CIFAR10_NEAR_OOD_CLASSES,
            ood=OODRole(
                "CIFAR-10 test images of classes 6-9 (frog, horse, ship, truck): near-OOD for runs "
                "trained on cifar10_split_id (classes 0-5)",
                not_for=("cifar10",),
                reason="classes 6-9 are in-distribution for a CIFAR-10 run",
                follow_run_source=True,
            ),
        ),
        DatasetSpec(
            "imagenet100",
            "ImageNet-100: labels 0..99 of tfds imagenet2012, streamed from its "
            "array_record files (ul_jax.data.imagenet)",
            100,
            ("train", "validation"),
            ("tfds",),
            224,
            streamed=True,
            eval_split="validation",
        ),
    )
}

# training sets (a run's data.name) → number of classes, known before any data is loaded
NUM_CLASSES: dict[str, int] = {n: s.num_classes for n, s in DATASETS.items() if s.trainable}
TRAIN_DATASETS: tuple[str, ...] = tuple(NUM_CLASSES)


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry of ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        known = ", ".join(DATASETS)
        raise ValueError(f"unknown dataset {name!r}; known datasets: {known}") from None


def train_dataset_spec(name: str) -> DatasetSpec:
    """The entry of a training set (a run's ``data.name``); ``ValueError`` naming the field."""
    spec = DATASETS.get(name) if isinstance(name, str) else None
    if spec is None or not spec.trainable:
        raise ValueError(f"data.name must be one of {sorted(NUM_CLASSES)}; got data.name={name!r}")
    return spec


def num_classes(name: str) -> int:
    """Number of classes of a registered dataset."""
    return dataset_spec(name).num_classes


def allowed_sources(name: str) -> tuple[str, ...]:
    """The loaders (``data.source`` values) that can serve ``name``, preferred first."""
    return dataset_spec(name).sources


def eval_split(name: str) -> str:
    """The split a run trained on ``name`` is evaluated on (``"test"``; ImageNet: validation)."""
    return dataset_spec(name).eval_split


def default_image_size(name: str) -> int:
    """The image side ``name``'s loader yields when ``data.image_size`` is ``None``."""
    return dataset_spec(name).image_size


def is_streamed(name: str) -> bool:
    """True for datasets streamed by a host loader (no in-memory arrays, no validation split,
    augmentation on the host: ``data.augment`` must be ``"none"``)."""
    return dataset_spec(name).streamed
