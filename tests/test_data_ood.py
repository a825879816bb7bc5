"""The OOD test sets (ul_jax.data.ood): honest names, the registry they come from, the overlap
rule, the loaders and the resize. The evaluation job that scores them: tests/test_eval_job.py."""

import numpy as np
import pytest
from PIL import Image

from ul_jax.data import registry
from ul_jax.data.ood import (
    OOD_SETS,
    check_ood_names,
    load_ood_images,
    resize_images,
    usable_ood_sets,
)


def test_ood_set_names_are_honest():
    for name, spec in OOD_SETS.items():
        if name != "svhn_cropped":
            assert "svhn" not in name.lower()
            assert "not SVHN" in spec.description or "SVHN" not in spec.description, name
    assert "stand-in" in OOD_SETS["digits_far_ood"].description


def test_ood_sets_come_from_the_registry():
    # every registered dataset with an OOD role is an OOD set with its sources, split and
    # overlaps; uniform_noise is the only set outside the registry; the paper's set leads
    registered = {n for n, s in registry.DATASETS.items() if s.ood is not None}
    assert set(OOD_SETS) == registered | {"uniform_noise"}
    assert next(iter(OOD_SETS)) == "svhn_cropped"
    for name in registered:
        spec, role = OOD_SETS[name], registry.DATASETS[name].ood
        assert spec.sources == registry.DATASETS[name].sources
        assert (spec.split, spec.overlaps, spec.follow_run_source) == (
            role.split,
            role.not_for,
            role.follow_run_source,
        )
        assert spec.split in registry.DATASETS[name].splits
        assert set(spec.overlaps) <= set(registry.DATASETS), name
    assert OOD_SETS["uniform_noise"].sources == ("synthetic",)


def test_overlap_rule():
    assert usable_ood_sets("digits") == tuple(n for n in OOD_SETS if n != "digits_far_ood")
    assert "cifar10" not in usable_ood_sets("cifar10_split_id")
    assert "cifar10_split_near_ood" in usable_ood_sets("cifar10_split_id")
    with pytest.raises(
        ValueError,
        match="cannot be used for a run trained on 'cifar100'.*Usable "
        "here: svhn_cropped, cifar10, digits_far_ood",
    ):
        check_ood_names(["cifar100"], "cifar100")
    with pytest.raises(ValueError, match="unknown OOD set 'svhn'; valid OOD sets: svhn_cropped"):
        check_ood_names(["svhn"])


def test_ood_loading_helpers():
    noise, info = load_ood_images("uniform_noise", (6, 6, 3))
    again, _ = load_ood_images("uniform_noise", (6, 6, 3))
    assert noise.shape == (2000, 6, 6, 3) and noise.dtype == np.uint8
    np.testing.assert_array_equal(noise, again)  # seeded
    assert info["resized"] is False and info["source"] == "synthetic"
    digits_ood, info = load_ood_images("digits_far_ood", (8, 8, 3))
    assert digits_ood.shape == (1797, 8, 8, 3) and info["native_size"] == [8, 8]
    x = np.random.default_rng(0).integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    y = resize_images(x, (4, 9))
    assert y.shape == (3, 4, 9, 3)
    np.testing.assert_array_equal(
        y[1], np.asarray(Image.fromarray(x[1]).resize((9, 4), Image.Resampling.BILINEAR))
    )
    assert resize_images(x, (5, 7)) is x


def test_missing_ood_data_is_a_named_error(tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match="OOD set 'cifar100' is not available with "
        "source='image_folder'.*try ood_source='tfds'",
    ):
        load_ood_images("cifar100", (32, 32, 3), source="image_folder", data_dir=tmp_path)
