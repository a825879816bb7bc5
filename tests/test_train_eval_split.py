"""``eval_train_split``: the terminal-phase check, an evaluation pass over the un-augmented
training images logged as ``train_eval/*`` (issue 23)."""

import json

import ml_collections
import numpy as np
import pytest

from ul_jax.train import train_and_evaluate
from ul_jax.train.loop import _evaluator
from ul_jax.train.setup import load_train_data


def _rows(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_train_eval_logged_at_every_evaluation(tmp_path, tiny_config_factory):
    on = tmp_path / "on"
    train_and_evaluate(tiny_config_factory("ce", eval_train_split=True), on)
    evals = [r for r in _rows(on) if "eval/accuracy" in r]
    assert [r["step"] for r in evals] == [6, 12]
    for r in evals:
        assert 0.0 <= r["train_eval/accuracy"] <= 1.0
        assert np.isfinite(r["train_eval/loss"])
        assert len(r["train_eval/class_feature_norm"]) == 10


def test_train_eval_pass_only_when_asked(monkeypatch, tiny_config_factory):
    """The evaluator runs the pass on the training images exactly when the field is set (the
    evaluation itself is replaced by a recorder: this checks the wiring, not the numbers)."""
    import dataclasses

    from ul_jax.train import loop

    calls = []
    monkeypatch.setattr(
        loop,
        "evaluate",
        lambda fn, state, batches, mesh, prefix="eval", **kw: calls.append(prefix) or {},
    )
    data = load_train_data(tiny_config_factory("ce"))
    data = dataclasses.replace(data, train_eval_batches=lambda layout: iter(()))
    loop._evaluator(tiny_config_factory("ce"), data, None, None)(None)
    assert calls == ["eval"]
    calls.clear()
    loop._evaluator(tiny_config_factory("ce", eval_train_split=True), data, None, None)(None)
    assert calls == ["eval", "train_eval"]


def test_train_eval_covers_every_training_image_once_unaugmented(tiny_config_factory):
    """The pass iterates the stored training images (not augmented batches): its count is the
    training-set size and the images are exactly the training arrays."""
    c = tiny_config_factory("ce", eval_train_split=True, **{"data.train_per_class": 7})
    data = load_train_data(c)
    seen, count = [], 0
    from ul_jax import data as uldata

    for b in data.train_eval_batches(uldata.batch_layout(32)):
        count += int(b["mask"].sum())
        seen.append(b["label"][b["mask"]])
    assert count == data.num_train == 70
    assert np.bincount(np.concatenate(seen), minlength=10).tolist() == [7] * 10


def test_train_eval_refused_for_streamed_data(tiny_config_factory):
    c = tiny_config_factory("ce", eval_train_split=True)
    data = load_train_data(c)
    import dataclasses

    streamed = dataclasses.replace(data, train_eval_batches=None)
    c.data.name = "imagenet100"
    with pytest.raises(ValueError, match="eval_train_split=True .*imagenet100"):
        _evaluator(c, streamed, eval_fn=None, mesh=None)


def test_streamed_is_decided_by_the_registry(monkeypatch):
    """setup.load_train_data streams a data set because the registry marks it ``streamed``, not
    because of its name: every streamed data set has a loader, and one without is refused."""
    import dataclasses

    from ul_jax.data import registry
    from ul_jax.train import setup

    streamed = {n for n, s in registry.DATASETS.items() if s.streamed}
    assert streamed == set(setup.STREAMING_LOADERS) == {"imagenet100"}
    fake = dataclasses.replace(registry.DATASETS["imagenet100"], name="web_stream")
    monkeypatch.setitem(registry.DATASETS, "web_stream", fake)
    config = ml_collections.ConfigDict({"data": {"name": "web_stream"}, "seed": 0})
    with pytest.raises(ValueError, match="data.name='web_stream' is a streamed dataset"):
        setup.load_train_data(config)
