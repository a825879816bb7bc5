"""The dataset registry (ul_jax.data.registry) and the loaders that consult it."""

import pytest

from ul_jax import data
from ul_jax.data import registry, sources


def test_table_is_consistent():
    for name, spec in registry.DATASETS.items():
        assert spec.name == name
        assert spec.num_classes >= 2 and spec.image_size >= 1
        assert spec.sources and set(spec.sources) <= set(registry.SOURCES), name
        assert spec.eval_split in spec.splits or not spec.trainable, name
        if spec.base is not None:
            base = registry.DATASETS[spec.base]
            assert len(spec.classes) == spec.num_classes
            assert set(spec.classes) <= set(range(base.num_classes))
            assert set(spec.sources) <= set(base.sources)
        if spec.ood is not None:
            assert spec.ood.split in spec.splits
            assert set(spec.ood.not_for) <= set(registry.DATASETS)
            assert spec.ood.reason or not spec.ood.not_for


def test_lookups():
    assert registry.NUM_CLASSES == {
        "cifar10": 10,
        "cifar100": 100,
        "digits": 10,
        "cifar10_split_id": 6,
        "imagenet100": 100,
    }
    assert registry.TRAIN_DATASETS == tuple(registry.NUM_CLASSES)
    assert data.NUM_CLASSES is registry.NUM_CLASSES
    assert registry.num_classes("svhn_cropped") == 10
    assert registry.allowed_sources("imagenet100") == ("tfds",)
    assert registry.is_streamed("imagenet100") and not registry.is_streamed("cifar10")
    assert registry.eval_split("imagenet100") == "validation"
    assert registry.eval_split("cifar10") == "test"
    assert registry.default_image_size("digits") == 16
    assert registry.default_image_size("imagenet100") == 224
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; known datasets: cifar10"):
        registry.dataset_spec("mnist")
    assert registry.train_dataset_spec("digits").num_classes == 10
    for bad in ("svhn_cropped", "digits_far_ood", "mnist", None):
        with pytest.raises(ValueError, match=r"data.name must be one of \['cifar10', "):
            registry.train_dataset_spec(bad)


def test_sources_derive_from_the_registry():
    assert sources.SOURCES is registry.SOURCES
    assert sources.DIGITS_NAMES == ("digits", "digits_far_ood")
    assert sources.NEAR_OOD_ID_CLASSES == (0, 1, 2, 3, 4, 5)
    assert sources.NEAR_OOD_OOD_CLASSES == (6, 7, 8, 9)


def test_load_dataset_refuses_what_the_registry_does_not_allow():
    with pytest.raises(ValueError, match="need source='digits'"):
        data.load_dataset("cifar10", "train", source="digits")
    with pytest.raises(ValueError, match="is streamed, it does not fit in memory"):
        data.load_dataset("imagenet100", "train", source="tfds")
    with pytest.raises(
        ValueError,
        match=r"digits_far_ood is an evaluation set: split must be one "
        r"of \('test', 'all'\)",
    ):
        data.load_dataset("digits_far_ood", "train", source="digits")
    # registry image sizes are the loader defaults
    assert data.load_dataset("digits", "test", source="digits").images.shape[1] == 16
    assert data.load_dataset("digits_far_ood", "all", source="digits").images.shape[1] == 32
