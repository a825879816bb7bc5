"""The real offline CIFAR-10 archive (``../shared/data/cifar10.tar.gz``): counts, statistics,
cache, long-tailed and class-split subsets, and the full train pipeline on it.

Skipped when the archive is absent (a fresh clone without ``../shared/data``). The archive is
decoded once per test session (about 10 s) into a temporary cache directory.
"""

import time

import jax
import numpy as np
import pytest

from ul_jax import data
from ul_jax.data import _cache, image_folder

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(scope="session")
def cifar(tmp_path_factory):
    archive = _cache.default_data_dir() / "cifar10.tar.gz"
    if not archive.is_file():
        pytest.skip(
            f"offline CIFAR-10 archive not found at {archive} (set UL_JAX_DATA_DIR; the project's "
            "machines have it in ../shared/data)"
        )
    cache_dir = tmp_path_factory.mktemp("ul_jax_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(_cache.ENV_CACHE_DIR, str(cache_dir))
        t0 = time.perf_counter()
        train = data.load_dataset("cifar10", "train", source="image_folder")
        test = data.load_dataset("cifar10", "test", source="image_folder")
        decode_s = time.perf_counter() - t0
    return {
        "archive": archive,
        "cache_dir": cache_dir,
        "train": train,
        "test": test,
        "decode_s": decode_s,
    }


def test_counts_shapes_classes(cifar):
    train, test = cifar["train"], cifar["test"]
    assert train.images.shape == (50_000, 32, 32, 3) and test.images.shape == (10_000, 32, 32, 3)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int32
    np.testing.assert_array_equal(train.class_counts(), [5000] * 10)
    np.testing.assert_array_equal(test.class_counts(), [1000] * 10)
    assert train.class_names == CLASSES == test.class_names


def test_channel_statistics(cifar):
    mean, std = data.channel_stats(cifar["train"].images)
    np.testing.assert_allclose(mean, [125.3, 122.9, 113.9], atol=0.1)
    np.testing.assert_allclose(std, [62.53, 61.91, 66.46], atol=0.05)  # JPEG copy (README)
    test_mean, _ = data.channel_stats(cifar["test"].images)
    np.testing.assert_allclose(test_mean, [125.99, 123.69, 114.85], atol=0.05)


def test_second_load_hits_cache(cifar, monkeypatch):
    monkeypatch.setenv(_cache.ENV_CACHE_DIR, str(cifar["cache_dir"]))

    def boom(*a, **k):
        raise AssertionError("decoded the archive again instead of reading the cache")

    monkeypatch.setattr(image_folder, "_decode_folder", boom)
    t0 = time.perf_counter()
    images, labels, names = data.load_image_folder(cifar["archive"], "train")
    elapsed = time.perf_counter() - t0
    assert elapsed < 3.0, f"cached load took {elapsed:.2f}s"
    np.testing.assert_array_equal(images, cifar["train"].images)
    np.testing.assert_array_equal(labels, cifar["train"].labels)
    assert names == CLASSES


def test_long_tailed_cifar10(cifar):
    lt = data.make_long_tailed(cifar["train"], 100, "exp", seed=0)
    assert len(lt) == 12_406
    np.testing.assert_array_equal(
        lt.class_counts(), [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    )
    for ratio, total in [(50, 13_996), (10, 20_431)]:
        assert len(data.long_tailed_indices(cifar["train"].labels, 10, ratio)) == total
    again = data.make_long_tailed(cifar["train"], 100, "exp", seed=0)
    np.testing.assert_array_equal(lt.images, again.images)
    other = data.make_long_tailed(cifar["train"], 100, "exp", seed=1)
    assert not np.array_equal(lt.images, other.images)


def test_near_ood_class_split(cifar, monkeypatch):
    monkeypatch.setenv(_cache.ENV_CACHE_DIR, str(cifar["cache_dir"]))
    ind = data.load_dataset("cifar10_split_id", "test", source="image_folder")
    ood = data.load_dataset("cifar10_split_near_ood", "test", source="image_folder")
    assert (len(ind), len(ood)) == (6000, 4000)
    assert ind.class_names == CLASSES[:6] and ood.class_names == CLASSES[6:]
    assert ood.name == "cifar10_split_near_ood"
    np.testing.assert_array_equal(ood.class_counts(), [1000] * 4)
    test = cifar["test"]
    np.testing.assert_array_equal(ood.images, test.images[test.labels >= 6])


def test_train_pipeline_on_cifar(cifar):
    train = cifar["train"]
    mean, std = data.channel_stats(train.images)
    layout = data.batch_layout(128)
    step_fn = jax.jit(lambda k, x: data.cifar_train_transform(k, x, mean, std))
    batches = data.train_batches(
        train.images, train.labels, layout, seed=0, start_step=390, num_steps=2
    )
    for step, batch in enumerate(data.prefetch_to_device(batches), start=390):
        x = step_fn(data.augment_key(0, step), batch["image"])
        assert x.shape == (128, 32, 32, 3) and x.dtype == np.float32
        assert abs(float(x.mean())) < 0.3 and 0.7 < float(x.std()) < 1.2
    n_eval = sum(
        int(b["mask"].sum())
        for b in data.eval_batches(cifar["test"].images, cifar["test"].labels, layout)
    )
    assert n_eval == 10_000
