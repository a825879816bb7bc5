"""Streaming accumulators: equal to the all-at-once metrics over padded batches; padding ignored."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ul_jax import metrics

C, P, N, BATCH = 10, 16, 300, 64  # 300 = 4·64 + 44: the last batch has 20 padded rows


def _batches(arrays, batch=BATCH, garbage="nan"):
    """Yields fixed-size batches; the last is padded with garbage rows and mask 0."""
    n = len(arrays[0])
    for i in range(0, n, batch):
        k = min(batch, n - i)
        out = []
        for a in arrays:
            pad = np.empty((batch - k,) + a.shape[1:], a.dtype)
            if np.issubdtype(a.dtype, np.integer):
                pad[...] = -7 if garbage == "nan" else 10**6
            else:
                pad[...] = np.nan if garbage == "nan" else 1e30
            out.append(np.concatenate([a[i : i + k], pad]))
        yield out, np.r_[np.ones(k), np.zeros(batch - k)].astype(np.float32)


def _cls_data(seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, size=N).astype(np.int32)
    z = (rng.normal(size=(N, C)) * 2 + 3 * np.eye(C)[y]).astype(np.float32)
    return z, y


def _run_classification(z, y, garbage="nan"):
    update = jax.jit(metrics.classification_update)
    state = metrics.classification_init(C)
    for (zb, yb), mask in _batches([z, y], garbage=garbage):
        state = update(state, zb, yb, mask)
    return state


def test_classification_equals_all_at_once():
    z, y = _cls_data()
    train_counts = [500, 300, 150, 101, 100, 60, 20, 19, 10, 5]
    res = metrics.classification_finalize(
        _run_classification(z, y), train_class_counts=train_counts, index_ranges="mislas"
    )
    probs = np.asarray(jax.nn.softmax(jnp.asarray(z), axis=1))
    assert res["num_examples"] == N
    assert res["top1"] == metrics.topk_accuracy(z, y, 1)
    assert res["top5"] == metrics.topk_accuracy(z, y, 5)
    per_class = metrics.per_class_accuracy(z, y)
    np.testing.assert_array_equal(res["per_class_accuracy"], per_class)
    bins = metrics.calibration_bins(probs, y)
    np.testing.assert_array_equal(res["calibration_bins"].counts, bins.counts)
    np.testing.assert_array_equal(res["calibration_bins"].correct, bins.correct)
    assert res["ece"] == pytest.approx(metrics.expected_calibration_error(probs, y), abs=1e-6)
    assert res["mce"] == pytest.approx(metrics.maximum_calibration_error(probs, y), abs=1e-6)
    assert res["shot_groups"] == metrics.shot_group_accuracy(per_class, train_counts)
    assert res["index_groups"] == metrics.index_range_group_accuracy(per_class)


def test_classification_padding_garbage_is_ignored():
    z, y = _cls_data(1)
    a = _run_classification(z, y, garbage="nan")
    b = _run_classification(z, y, garbage="huge")
    chex.assert_trees_all_equal(a, b)
    # and equals an unpadded single batch
    c = metrics.classification_update(metrics.classification_init(C), z, y)
    chex.assert_trees_all_equal(a.class_count, c.class_count)
    chex.assert_trees_all_equal(a.bin_count, c.bin_count)
    chex.assert_trees_all_equal(a.topk_correct, c.topk_correct)


def test_from_probs_edge_confidences_match_host_bins():
    # confidences exactly on float32-rounded edges must bin as in float64 (one bin up)
    e = np.linspace(0, 1, 16).astype(np.float32)[6:]  # ≥ 0.4 so the confidence is the max
    probs = np.stack([e, (1 - e) / 2, (1 - e) / 2], axis=1).astype(np.float32)
    probs = np.pad(probs, ((0, 0), (0, C - 3)))
    y = np.zeros(len(e), np.int32)
    update = jax.jit(metrics.classification_update_from_probs)
    res = metrics.classification_finalize(update(metrics.classification_init(C), probs, y))
    want = metrics.calibration_bins(probs, y).counts
    np.testing.assert_array_equal(res["calibration_bins"].counts, want)
    assert res["ece"] == pytest.approx(metrics.expected_calibration_error(probs, y), abs=1e-7)


def test_classification_invalid_rows_raise_at_finalize():
    z, y = _cls_data()
    z[3, 2] = np.nan
    state = metrics.classification_update(metrics.classification_init(C), z, y)
    with pytest.raises(ValueError, match="1 real"):
        metrics.classification_finalize(state)
    y2 = y.copy()
    y2[0] = C
    state = metrics.classification_update(metrics.classification_init(C), _cls_data()[0], y2)
    with pytest.raises(ValueError, match="labels outside"):
        metrics.classification_finalize(state)
    state = metrics.classification_update_from_probs(
        metrics.classification_init(C), np.full((4, C), 0.5, np.float32), y[:4]
    )
    with pytest.raises(ValueError, match="invalid probabilities"):
        metrics.classification_finalize(state)


_Z, _Y = np.zeros((4, C)), np.zeros(4, int)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s: metrics.classification_update(s, np.zeros((4, C + 1)), _Y), "logits.shape"),
        (lambda s: metrics.classification_update(s, _Z, np.zeros(5, int)), "labels.shape"),
        (lambda s: metrics.classification_update(s, _Z, np.zeros(4)), "labels must be integers"),
        (lambda s: metrics.classification_update(s, _Z, _Y, np.ones(3)), "mask.shape"),
        (lambda s: metrics.classification_update(s, _Z, _Y, np.full(4, 2.0)), "mask must be 0/1"),
        (lambda s: metrics.classification_finalize(s), "no examples"),
        (lambda s: metrics.classification_init(C, topk=(1, 11)), "topk"),
    ],
)
def test_classification_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call(metrics.classification_init(C))


def _nc_data(seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, size=N).astype(np.int32)
    centers = 4.0 * rng.normal(size=(C, P))
    h = (centers[y] + rng.normal(size=(N, P)) + 20.0).astype(np.float32)
    w = rng.normal(size=(P, C)).astype(np.float32)
    b = rng.normal(size=C).astype(np.float32)
    return h, y, w, b


def _run_collapse(h, y, w, b, garbage="nan"):
    upd = jax.jit(metrics.collapse_update)
    state = metrics.collapse_init(C, P)
    for (hb, yb), mask in _batches([h, y], garbage=garbage):
        state = upd(state, hb, yb, mask)
    means = metrics.collapse_class_means(state)
    nupd = jax.jit(metrics.ncc_update)
    ncc = metrics.ncc_init()
    logits = h @ w + b
    for (hb, zb), mask in _batches([h, logits], garbage=garbage):
        ncc = nupd(ncc, hb, zb, means, mask)
    return state, ncc


def test_collapse_equals_all_at_once():
    h, y, w, b = _nc_data()
    state, ncc = _run_collapse(h, y, w, b)
    got = metrics.collapse_finalize(state, w, ncc)
    want = metrics.neural_collapse(h, y, w, bias=b)
    assert set(got) == set(want)
    for key, val in want.items():
        assert got[key] == pytest.approx(val, rel=2e-5, abs=1e-6), key
    assert "ncc_agreement" not in metrics.collapse_finalize(state, w)


def test_collapse_padding_garbage_is_ignored():
    h, y, w, b = _nc_data(2)
    a = _run_collapse(h, y, w, b, garbage="nan")
    c = _run_collapse(h, y, w, b, garbage="huge")
    chex.assert_trees_all_equal(a, c)
    assert int(a[0].invalid) == 0 and int(a[1].total) == N


def test_collapse_invalid_and_mismatched_passes():
    h, y, w, b = _nc_data()
    h[5, 0] = np.inf
    state = metrics.collapse_update(metrics.collapse_init(C, P), h, y)
    with pytest.raises(ValueError, match="non-finite features"):
        metrics.collapse_finalize(state, w)
    h, y, w, b = _nc_data()
    state = metrics.collapse_update(metrics.collapse_init(C, P), h, y)
    means = metrics.collapse_class_means(state)
    ncc = metrics.ncc_update(metrics.ncc_init(), h[:10], h[:10] @ w, means)
    with pytest.raises(ValueError, match="both passes"):
        metrics.collapse_finalize(state, w, ncc)
    with pytest.raises(ValueError, match="features.shape"):
        metrics.collapse_update(state, h[:, :-1], y)


def test_score_buffer_equals_direct_scores():
    rng = np.random.default_rng(5)
    z_in = 3 * rng.normal(size=(N, C)).astype(np.float32)
    h_in = rng.normal(size=(N, P)).astype(np.float32)
    z_out = rng.normal(size=(130, C)).astype(np.float32)
    h_out = 0.5 * rng.normal(size=(130, P)).astype(np.float32)
    upd = jax.jit(metrics.ood_score_update)
    out = {}
    for name, (z, h) in {"id": (z_in, h_in), "ood": (z_out, h_out)}.items():
        buf = metrics.score_buffer_init(512)
        for (zb, hb), mask in _batches([z, h]):
            buf = upd(buf, zb, hb, mask)
        out[name] = metrics.score_buffer_finalize(buf)
    energy_in = np.asarray(metrics.energy_score(z_in))
    np.testing.assert_allclose(out["id"]["energy"], energy_in, rtol=1e-6)
    np.testing.assert_allclose(out["id"]["msp"], np.asarray(metrics.msp_score(z_in)), rtol=1e-6)
    np.testing.assert_allclose(out["ood"]["feature_norm"], np.linalg.norm(h_out, axis=1), rtol=1e-5)
    assert len(out["ood"]["energy"]) == 130
    got = metrics.ood_metrics(out["id"]["feature_norm"], out["ood"]["feature_norm"])
    want = metrics.ood_metrics(np.linalg.norm(h_in, axis=1), np.linalg.norm(h_out, axis=1))
    assert got == pytest.approx(want, abs=1e-12)


def test_score_buffer_overflow_and_invalid():
    buf = metrics.score_buffer_init(5, names=("s",))
    buf = metrics.score_buffer_update(buf, {"s": jnp.arange(4.0)}, jnp.array([1, 0, 1, 1]))
    np.testing.assert_array_equal(metrics.score_buffer_finalize(buf)["s"], [0.0, 2.0, 3.0])
    full = metrics.score_buffer_update(buf, {"s": jnp.arange(4.0)})
    with pytest.raises(ValueError, match="capacity=5"):
        metrics.score_buffer_finalize(full)
    bad = metrics.score_buffer_update(buf, {"s": jnp.array([jnp.nan, 1.0])}, jnp.array([1, 1]))
    with pytest.raises(ValueError, match="non-finite scores"):
        metrics.score_buffer_finalize(bad)
    with pytest.raises(ValueError, match="keys"):
        metrics.score_buffer_update(buf, {"t": jnp.arange(2.0)})
