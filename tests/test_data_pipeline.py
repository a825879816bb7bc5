"""Batch layout over hosts/devices, resumable train order, padded eval, global sharded arrays
(1 CPU device here, 4 forced host devices in a subprocess)."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from ul_jax.data import pipeline
from ul_jax.data.pipeline import batch_layout


def test_layout_sizes_and_slices():
    lay = batch_layout(48, process_count=3, process_index=2, local_device_count=4)
    assert (lay.host_batch_size, lay.device_batch_size) == (16, 4)
    assert lay.host_slice == slice(32, 48)
    default = batch_layout(8)
    assert default.process_count == jax.process_count() == 1
    assert default.local_device_count == jax.local_device_count()


@pytest.mark.parametrize("b, pc, ld", [(10, 4, 1), (12, 2, 4), (0, 1, 1), (7, 1, 2)])
def test_layout_not_divisible_names_batch_and_devices(b, pc, ld):
    with pytest.raises(
        ValueError, match=rf"global_batch_size={b} .*= {pc} × {ld} = {pc * ld} devices"
    ):
        batch_layout(b, process_count=pc, process_index=0, local_device_count=ld)


def test_epoch_permutation():
    a = pipeline.epoch_permutation(100, 7, 3)
    np.testing.assert_array_equal(np.sort(a), np.arange(100))
    np.testing.assert_array_equal(a, pipeline.epoch_permutation(100, 7, 3))
    np.testing.assert_array_equal(a, np.random.default_rng([7, 3]).permutation(100))
    assert not np.array_equal(a, pipeline.epoch_permutation(100, 7, 4))
    assert not np.array_equal(a, pipeline.epoch_permutation(100, 8, 3))


def test_train_epoch_structure():
    n, b = 103, 10
    lay = batch_layout(b, process_count=1, process_index=0, local_device_count=1)
    spe = pipeline.steps_per_epoch(n, b)
    assert spe == 10
    batches = list(pipeline.train_index_batches(n, lay, seed=1, num_steps=2 * spe))
    assert all(x.shape == (b,) for x in batches)
    for e in range(2):
        epoch = np.concatenate(batches[e * spe : (e + 1) * spe])
        assert len(np.unique(epoch)) == spe * b  # no repeats within an epoch
        np.testing.assert_array_equal(epoch, pipeline.epoch_permutation(n, 1, e)[: spe * b])
    with pytest.raises(ValueError, match="num_examples=5 is smaller than global_batch_size=10"):
        next(pipeline.train_index_batches(5, lay, seed=0))


@pytest.mark.parametrize("k", [0, 1, 9, 10, 23])
def test_resume_equals_uninterrupted(k):
    n, b = 103, 10
    lay = batch_layout(b, process_count=1, process_index=0, local_device_count=1)
    full = list(pipeline.train_index_batches(n, lay, seed=5, num_steps=30))
    resumed = list(pipeline.train_index_batches(n, lay, seed=5, start_step=k, num_steps=30 - k))
    assert len(resumed) == 30 - k
    for a, r in zip(full[k:], resumed):
        np.testing.assert_array_equal(a, r)
    other_seed = list(pipeline.train_index_batches(n, lay, seed=6, num_steps=30))
    assert not all(np.array_equal(a, o) for a, o in zip(full, other_seed))


def test_resumed_image_batches_and_hosts_partition_the_global_batch():
    n, b, hosts = 64, 8, 2
    images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    labels = (np.arange(n) % 3).astype(np.int32)
    full_lay = batch_layout(b, process_count=1, process_index=0, local_device_count=1)
    glob = list(pipeline.train_index_batches(n, full_lay, seed=0, num_steps=20))
    per_host = []
    for h in range(hosts):
        lay = batch_layout(b, process_count=hosts, process_index=h, local_device_count=2)
        per_host.append(
            list(pipeline.train_batches(images, labels, lay, seed=0, start_step=13, num_steps=7))
        )
    for i, step in enumerate(range(13, 20)):
        got = np.concatenate([per_host[h][i]["image"][:, 0, 0, 0] for h in range(hosts)])
        np.testing.assert_array_equal(got, glob[step])
        np.testing.assert_array_equal(
            np.concatenate([per_host[h][i]["label"] for h in range(hosts)]), labels[glob[step]]
        )


@pytest.mark.parametrize("n, b, hosts", [(103, 8, 2), (96, 8, 2), (5, 8, 1), (17, 12, 3)])
def test_eval_visits_every_example_once(n, b, hosts):
    images = (np.arange(n) % 250 + 1).astype(np.uint8)[:, None, None, None] * np.ones(
        (1, 2, 2, 3), np.uint8
    )
    labels = (np.arange(n) % 4).astype(np.int32)
    seen, mask_sum, counts = [], 0, []
    for h in range(hosts):
        lay = batch_layout(b, process_count=hosts, process_index=h, local_device_count=1)
        batches = list(pipeline.eval_batches(images, labels, lay))
        counts.append(len(batches))
        for bt in batches:
            assert bt["image"].shape == (b // hosts, 2, 2, 3) and bt["mask"].dtype == bool
            mask_sum += int(bt["mask"].sum())
            seen.extend(bt["index"][bt["mask"]].tolist())
            np.testing.assert_array_equal(bt["image"][bt["mask"]], images[bt["index"][bt["mask"]]])
            np.testing.assert_array_equal(bt["label"][bt["mask"]], labels[bt["index"][bt["mask"]]])
            assert np.all(bt["image"][~bt["mask"]] == 0) and np.all(bt["index"][~bt["mask"]] == -1)
    assert len(set(counts)) == 1 and counts[0] == pipeline.num_eval_batches(n, b) == -(-n // b)
    assert mask_sum == n
    assert sorted(seen) == list(range(n))


def test_to_global_array_single_device_and_prefetch():
    mesh = pipeline.data_mesh()
    assert mesh.axis_names == ("data",)
    host = {
        "image": np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3),
        "label": np.arange(4, dtype=np.int32),
    }
    g = pipeline.to_global_array(host, mesh)
    assert isinstance(g["image"], jax.Array) and g["image"].shape == (4, 2, 2, 3)
    assert g["image"].sharding.spec == jax.sharding.PartitionSpec("data")
    np.testing.assert_array_equal(g["image"], host["image"])
    batches = [{"x": np.full((2,), i, np.int32)} for i in range(5)]
    out = [int(b["x"][0]) for b in pipeline.prefetch_to_device(iter(batches), size=2)]
    assert out == [0, 1, 2, 3, 4]


_MULTI_DEVICE_SCRIPT = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np
    from ul_jax.data import augment, pipeline
    out = {"devices": jax.device_count()}
    lay = pipeline.batch_layout(8)
    out["layout"] = [lay.host_batch_size, lay.device_batch_size]
    try:
        pipeline.batch_layout(6)
    except ValueError as e:
        out["layout_error"] = str(e)
    images = np.random.default_rng(0).integers(0, 256, (8, 6, 6, 3), dtype=np.uint8)
    g = pipeline.to_global_array({"image": images, "label": np.arange(8, dtype=np.int32)})
    out["shape"] = list(g["image"].shape)
    out["shards"] = sorted([list(s.data.shape) for s in g["image"].addressable_shards])
    out["shard_rows"] = sorted(int(s.data[0, 0, 0, 0]) for s in g["image"].addressable_shards) == sorted(int(v) for v in images[::2, 0, 0, 0])
    out["values_equal"] = bool(np.array_equal(np.asarray(g["image"]), images))
    f = jax.jit(augment.cifar_train_transform)
    mean, std = np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])
    sharded = f(augment.augment_key(0, 3), g["image"], mean, std)
    single = f(augment.augment_key(0, 3), jax.device_put(images, jax.devices()[0]), mean, std)
    out["aug_sharded_spec"] = str(sharded.sharding.spec)
    out["aug_equal"] = bool(np.array_equal(np.asarray(sharded), np.asarray(single)))
    try:
        pipeline.to_global_array({"image": images[:6]})
    except ValueError as e:
        out["put_error"] = str(e)
    print("RESULT" + json.dumps(out))
    """
)


def test_four_forced_cpu_devices_subprocess():
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu"
    )
    proc = subprocess.run(
        [sys.executable, "-c", _MULTI_DEVICE_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    out = json.loads(line[len("RESULT") :])
    assert out["devices"] == 4
    assert out["layout"] == [8, 2]
    assert "global_batch_size=6" in out["layout_error"] and "4 devices" in out["layout_error"]
    assert out["shape"] == [8, 6, 6, 3]
    assert out["shards"] == [[2, 6, 6, 3]] * 4
    assert out["shard_rows"] and out["values_equal"]
    assert "data" in out["aug_sharded_spec"]
    assert out["aug_equal"], "augmentation must not depend on how the batch is sharded"
    assert "host batch size 6" in out["put_error"] and "4 local devices" in out["put_error"]
