"""The grain ImageNet-100 loader on a small synthetic tfds-prepared ``imagenet2012`` (random JPEGs
written as array_record, read through ``tfds.data_source`` like the real one): the ImageNet-100
index and its cache, train order and per-example augmentation, exact resume, per-process
slices, padded eval, worker processes, and the index shared over two ``jax.distributed``
processes (slow)."""

import json
import os
import pickle
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ul_jax.data import imagenet, pipeline, transforms
from ul_jax.data.image_folder import decode_image

REPO = Path(__file__).resolve().parents[1]
SIZES = [(20, 31), (37, 25), (30, 30), (18, 40), (26, 22)]
N_TRAIN, N_VAL = 40, 11


def _layout(batch: int, processes: int = 1, index: int = 0) -> pipeline.BatchLayout:
    return pipeline.batch_layout(
        batch, process_count=processes, process_index=index, local_device_count=1
    )


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory) -> Path:
    """``imagenet2012`` with 40 train / 11 validation records, labels uniform in [0, 150)."""
    d = tmp_path_factory.mktemp("tfds")
    imagenet.write_synthetic_imagenet2012(
        d, {"train": N_TRAIN, "validation": N_VAL}, seed=1, label_range=150, sizes=SIZES
    )
    return d


@pytest.fixture(scope="module")
def train_source(tfds_dir):
    source = imagenet.open_imagenet2012("train", tfds_dir)
    labels = imagenet.scan_labels(source)
    return source, labels, imagenet.class_subset_indices(labels)


def _loader(train_source, **kw) -> imagenet.ImageNetLoader:
    source, _, idx = train_source
    kw = {"train": True, "seed": 3, "image_size": 12, "resize_size": 14, **kw}
    return imagenet.ImageNetLoader(source, idx, **kw)


def test_records_read_through_tfds_and_pickle(train_source, tfds_dir):
    source, labels, idx = train_source
    assert len(source) == N_TRAIN and source.dataset_info.version == "5.1.0"
    item = source[1]
    assert isinstance(item["image"], bytes) and item["label"] == labels[1]
    assert decode_image(item["image"], "r1").shape == (*SIZES[1], 3)
    assert 0 < len(idx) < N_TRAIN and np.all(labels[idx] < 100)
    assert np.all(labels[np.setdiff1d(np.arange(N_TRAIN), idx)] >= 100)
    clone = pickle.loads(pickle.dumps(source))  # what grain's worker processes receive
    assert clone[1]["image"] == item["image"] and clone[1]["label"] == item["label"]


def test_index_cache_is_used_and_invalidated_by_the_class_list(tfds_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    scans = []
    real_scan = imagenet.scan_labels
    monkeypatch.setattr(imagenet, "scan_labels", lambda s: scans.append(len(s)) or real_scan(s))
    first = imagenet.make_imagenet100_loader(
        "train", train=True, data_dir=tfds_dir, cache_dir=cache
    )
    labels = real_scan(first.source)
    np.testing.assert_array_equal(first.indices, np.flatnonzero(labels < 100))
    assert scans == [N_TRAIN] and len(list((cache / "imagenet_index").iterdir())) == 1
    # a second loader (another host sharing the cache, a restart) reads the file, no scan
    again = imagenet.make_imagenet100_loader(
        "train", train=False, data_dir=tfds_dir, cache_dir=cache
    )
    np.testing.assert_array_equal(again.indices, first.indices)
    assert scans == [N_TRAIN]
    # another class list under the same key is another entry: scanned once, then cached
    key = "same key"
    a = imagenet.imagenet100_indices(first.source, key, cache, classes=range(100))
    b = imagenet.imagenet100_indices(first.source, key, cache, classes=range(50, 120))
    np.testing.assert_array_equal(b, np.flatnonzero((labels >= 50) & (labels < 120)))
    assert not np.array_equal(a, b) and scans == [N_TRAIN] * 3
    np.testing.assert_array_equal(
        imagenet.imagenet100_indices(first.source, key, cache, classes=range(50, 120)), b
    )
    assert scans == [N_TRAIN] * 3
    # an entry whose recorded class list differs from the key's (tampered) is not trusted
    entry = imagenet.index_cache_entry(key, N_TRAIN, tuple(range(100)), cache)
    meta = json.loads((entry / "meta.json").read_text())
    meta["classes"][0] = 100
    (entry / "meta.json").write_text(json.dumps(meta))
    np.testing.assert_array_equal(imagenet.imagenet100_indices(first.source, key, cache), a)
    assert scans == [N_TRAIN] * 4


def test_train_order_and_augmentation_are_a_function_of_seed_and_step(train_source):
    source, labels, idx = train_source
    n, lay = len(idx), _layout(4)
    steps = 2 * (n // 4) + 2  # into the third epoch
    full = list(_loader(train_source, num_threads=3).train_batches(lay, num_steps=steps))
    assert all(b["image"].shape == (4, 12, 12, 3) and b["image"].dtype == np.uint8 for b in full)
    # the order is that of ul_jax.data.pipeline (the CIFAR loader's)
    for b, pos in zip(full, pipeline.train_index_batches(n, lay, seed=3, num_steps=steps)):
        assert b["label"].dtype == np.int32
        np.testing.assert_array_equal(b["label"], labels[idx[pos]])
    # batch k is the same whatever the threads, and indexable without iterating
    ds = _loader(train_source, num_threads=0).train_dataset(lay)
    for k in (0, 5, steps - 1):
        np.testing.assert_array_equal(ds[k]["image"], full[k]["image"])
    # another seed: another order and other crops
    other = _loader(train_source, seed=4).train_dataset(lay)[0]
    assert not np.array_equal(other["image"], full[0]["image"])
    # each epoch crops an example anew: the first example of epoch 0 that epoch 1 uses too
    used = (n // 4) * 4  # the last n mod 4 of each epoch's permutation are skipped
    perm0, perm1 = (pipeline.epoch_permutation(n, 3, e)[:used] for e in (0, 1))
    i = next(i for i in range(used) if perm0[i] in perm1)
    j = int(np.flatnonzero(perm1 == perm0[i])[0])
    first, again = full[i // 4]["image"][i % 4], full[n // 4 + j // 4]["image"][j % 4]
    assert full[i // 4]["label"][i % 4] == full[n // 4 + j // 4]["label"][j % 4]
    assert not np.array_equal(first, again)


def test_resume_from_any_step_is_exact(train_source):
    lay = _layout(4)
    full = list(_loader(train_source, num_threads=2).train_batches(lay, num_steps=12))
    for start in (1, 6, 7, 11):
        resumed = list(
            _loader(train_source, num_threads=1, prefetch=1).train_batches(
                lay, start_step=start, num_steps=12 - start
            )
        )
        assert len(resumed) == 12 - start
        for a, b in zip(full[start:], resumed):
            np.testing.assert_array_equal(a["image"], b["image"])
            np.testing.assert_array_equal(a["label"], b["label"])


def test_augmentation_does_not_depend_on_the_batch_size(train_source):
    """Example (epoch 0, slot 0) gets the same crop with global batch 2 and 4."""
    b4 = _loader(train_source).train_dataset(_layout(4))[0]
    b2 = _loader(train_source).train_dataset(_layout(2))[0]
    np.testing.assert_array_equal(b4["image"][:2], b2["image"])
    np.testing.assert_array_equal(b4["label"][:2], b2["label"])


def test_per_process_slices_are_disjoint_and_cover_the_global_batch(train_source, tfds_dir):
    loader = _loader(train_source)
    whole = loader.train_dataset(_layout(6), start_step=2, num_steps=5)
    hosts = [loader.train_dataset(_layout(6, 3, i), start_step=2, num_steps=5) for i in range(3)]
    assert len(whole) == 5 and all(len(h) == 5 for h in hosts)
    for k in range(5):
        for key in ("image", "label"):
            parts = [h[k][key] for h in hosts]
            assert all(len(p) == 2 for p in parts)
            # process i holds rows [2i, 2i+2) of the global batch: disjoint, together all of it
            np.testing.assert_array_equal(np.concatenate(parts), whole[k][key])
    # eval: every example exactly once over the processes, same number of batches on each
    ev = imagenet.ImageNetLoader(
        imagenet.open_imagenet2012("validation", tfds_dir),
        train=False,
        image_size=12,
        resize_size=14,
    )
    per_host = [list(ev.eval_batches(_layout(6, 3, i))) for i in range(3)]
    assert {len(h) for h in per_host} == {pipeline.num_eval_batches(N_VAL, 6)}
    seen = np.concatenate([b["index"][b["mask"]] for h in per_host for b in h])
    assert sorted(seen.tolist()) == list(range(N_VAL))


def test_eval_batches_are_exact_and_padded(tfds_dir):
    source = imagenet.open_imagenet2012("validation", tfds_dir)
    ev = imagenet.ImageNetLoader(source, train=False, image_size=12, resize_size=14)
    batches = list(ev.eval_batches(_layout(4)))
    assert len(batches) == 3
    for b in batches:
        for j in range(4):
            i = int(b["index"][j])
            if not b["mask"][j]:
                assert i == -1 and b["label"][j] == 0 and not b["image"][j].any()
                continue
            image = decode_image(source[i]["image"], str(i))
            exp = transforms.imagenet_eval_transform(image, 12, 14)
            np.testing.assert_array_equal(b["image"][j], exp)
            assert b["label"][j] == source[i]["label"]
    assert int(sum(b["mask"].sum() for b in batches)) == N_VAL


def test_worker_processes_give_the_same_batches(train_source):
    lay = _layout(4)
    local = list(_loader(train_source, num_threads=1).train_batches(lay, 3, 4))
    workers = list(_loader(train_source, num_workers=2).train_batches(lay, 3, 4))
    assert len(workers) == 4
    for a, b in zip(local, workers):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])


def test_bad_record_and_bad_arguments_are_named(train_source):
    source, _, _ = train_source
    feats = source._features  # the imagenet2012 features
    good = source._records[0]
    bad = feats.serialize_example({"image": b"not a jpeg", "label": 2, "file_name": "x.JPEG"})
    records = imagenet.ParsedRecords([good, bad], feats)
    ev = imagenet.ImageNetLoader(records, train=False, image_size=4, resize_size=4)
    with pytest.raises(ValueError, match="cannot decode image record 1"):
        list(ev.eval_batches(_layout(2)))
    with pytest.raises(ValueError, match="num_workers=-1"):
        imagenet.ImageNetLoader(records, train=True, num_workers=-1)
    with pytest.raises(ValueError, match="start_step=-2"):
        imagenet.ImageNetLoader(records, train=True).train_dataset(_layout(2), start_step=-2)


_TWO_PROCESS_SCRIPT = textwrap.dedent(
    """
    import sys
    import jax
    import numpy as np
    from ul_jax.data import imagenet, pipeline

    pid, port, tfds_dir, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    if pid == 1:  # only process 0 may scan
        def no_scan(source):
            raise AssertionError("process 1 scanned the labels")
        imagenet.scan_labels = no_scan
    loader = imagenet.make_imagenet100_loader(
        "train", train=True, data_dir=tfds_dir, seed=3, image_size=12, resize_size=14,
        cache_dir=f"{out}/cache{pid}",
    )
    layout = pipeline.batch_layout(4, local_device_count=1)
    batch = next(loader.train_batches(layout, start_step=1, num_steps=1))
    np.savez(f"{out}/p{pid}.npz", indices=loader.indices, **batch)
    """
)


@pytest.mark.slow
def test_two_processes_share_one_index_scan(tfds_dir, train_source, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _TWO_PROCESS_SCRIPT, str(pid), str(port), str(tfds_dir)]
            + [str(tmp_path)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pid in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    _, labels, idx = train_source
    out = [np.load(tmp_path / f"p{pid}.npz") for pid in range(2)]
    for o in out:
        np.testing.assert_array_equal(o["indices"], idx)
    # process 1 received the index and cached it for its next start
    assert len(list((tmp_path / "cache1" / "imagenet_index").iterdir())) == 1
    whole = _loader(train_source).train_dataset(_layout(4))[1]
    for key in ("image", "label"):
        np.testing.assert_array_equal(np.concatenate([o[key] for o in out]), whole[key])
