"""``config.profile_steps``: a ``jax.profiler`` trace of the chosen steps under WORKDIR/profile,
nothing without it, and a bad value refused naming the field."""

from __future__ import annotations

import pytest
from helpers import tiny_config

from ul_jax.train import train_and_evaluate
from ul_jax.train.summary_text import workdir_files
from ul_jax.train.validate import validate_config


def test_profile_steps_write_a_trace_and_no_field_writes_none(tmp_path):
    c = tiny_config(num_train_steps=6, eval_every=6, checkpoint_every=6, profile_steps=(3, 2))
    out = train_and_evaluate(c, tmp_path / "profiled")
    assert out["step"] == 6
    traces = sorted((tmp_path / "profiled" / "profile").glob("plugins/profile/*/*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0  # one trace: steps 3 and 4
    assert "profile/" in [name for name, _ in workdir_files(tmp_path / "profiled")]

    plain = tiny_config(num_train_steps=6, eval_every=6, checkpoint_every=6)
    assert plain.profile_steps is None  # the default
    train_and_evaluate(plain, tmp_path / "plain")
    assert not (tmp_path / "plain" / "profile").exists()
    assert not list((tmp_path / "plain").rglob("*.xplane.pb"))


@pytest.mark.parametrize("bad", [(0, 2), (3,), (3, 0), (3, 2, 1), (1.5, 2), (True, 2)])
def test_bad_profile_steps_name_the_field(bad):
    with pytest.raises(ValueError, match="profile_steps"):
        validate_config(tiny_config(profile_steps=bad))
