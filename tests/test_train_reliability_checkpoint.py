"""Checkpoint damage: every file of a checkpoint truncated, deleted or with a flipped byte either
restores bit-exactly or is detected (and resume falls back to the previous checkpoint with a
warning naming the damaged one); no usable checkpoint is an error, never a silent fresh start,
unless ``config.restart``; orbax temporary directories left by a kill are ignored; replicas that
differ between processes are refused."""

import gc
import logging
import shutil
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ul_jax.train import NoUsableCheckpointError, read_jsonl, restore_checkpoint, train_and_evaluate
from ul_jax.train import checkpoint as ckpt_lib
from ul_jax.train.checkpoint import CheckpointCorruptError, Checkpointer

sys.path.insert(0, str(Path(__file__).parent))
from helpers import tiny_config

# orbax leaves the coroutines of a failed read un-awaited and garbage collection reports them
# at any later point: noise of the damaged checkpoints read here, not failures
pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning"),
]


@pytest.fixture(autouse=True)
def _collect_abandoned_reads():
    """Collects those coroutines at the end of each test here, under the filters above, rather
    than in whichever later test (of another file) the garbage collector happens to run."""
    yield
    gc.collect()


# ---------------------------------------------------------------------------------------------
# Checkpointer level: the whole damage matrix on a small tree
# ---------------------------------------------------------------------------------------------
def _small_state(offset):
    return {
        "w": jnp.arange(1000, dtype=jnp.float32) + offset,
        "bn": {"mean": jnp.full((30, 30), 0.5 + offset)},
        "step": jnp.int32(offset),
    }


def _truncate(p: Path):
    with open(p, "r+b") as f:
        f.truncate(p.stat().st_size // 2)


def _flip(p: Path):
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0x10
    p.write_bytes(bytes(b))


DAMAGE = {"truncate": _truncate, "delete": Path.unlink, "flip a byte": _flip}


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("matrix") / "ck"
    with Checkpointer(d, keep=3) as ck:
        ck.save(1, _small_state(1), extra={"note": "one"})
        ck.save(2, _small_state(2), extra={"note": "two"})
    return d


def test_every_damaged_file_restores_exactly_or_falls_back(two_checkpoints, tmp_path):
    files = sorted(
        p.relative_to(two_checkpoints / "2")
        for p in (two_checkpoints / "2").rglob("*")
        if p.is_file()
    )
    assert len(files) >= 8
    outcomes = {}
    for rel in files:
        for how, damage in DAMAGE.items():
            d = tmp_path / f"{how}-{str(rel).replace('/', '_')}"
            shutil.copytree(two_checkpoints, d)
            damage(d / "2" / rel)
            with Checkpointer(d) as ck:
                step, state, damaged = ck.restore_latest(_small_state(0))
            want = _small_state(step if step is not None else 0)
            exact = all(
                np.array_equal(x, y) for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(want))
            )
            # never a silently wrong state: either checkpoint 2 exactly, or a fallback to
            # checkpoint 1 (exactly) naming checkpoint 2 as damaged
            assert exact, (how, rel, step)
            if step == 1:
                assert [e.path for e in damaged] == [d / "2"], (how, rel)
            else:
                assert step == 2 and damaged == [], (how, rel, damaged)
            outcomes[(how, str(rel))] = (step, damaged[0].reason if damaged else "")
    fallbacks = {k: v for k, v in outcomes.items() if v[0] == 1}
    # the files that matter are caught: orbax's own metadata, the array data ...
    assert ("delete", "_CHECKPOINT_METADATA") in fallbacks
    assert ("truncate", "default/_METADATA") in fallbacks
    assert ("truncate", "default/manifest.ocdbt") in fallbacks
    data = [f for f in files if "/d/" in str(f)]
    largest = max(data, key=lambda f: (two_checkpoints / "2" / f).stat().st_size)
    assert all((how, str(largest)) in fallbacks for how in DAMAGE)
    # ... including bytes that tensorstore reads back without an error: the fingerprint
    assert any("differ from the saved ones" in reason for _, reason in fallbacks.values())


def test_checkpoint_without_fingerprint_needs_verify_false(tmp_path):
    import orbax.checkpoint as ocp

    with ocp.CheckpointManager(
        tmp_path / "old", item_handlers=ocp.StandardCheckpointHandler()
    ) as m:
        m.save(5, args=ocp.args.StandardSave(_small_state(5)))  # as before fingerprints existed
    with Checkpointer(tmp_path / "old") as ck:
        with pytest.raises(
            CheckpointCorruptError,
            match=r"old/5 is damaged: it has no ul_jax "
            r"fingerprint.*verify=False",
        ):
            ck.restore(5, _small_state(0))
        state = ck.restore(5, _small_state(0), verify=False)
    assert float(state["w"][0]) == 5.0


def test_replicas_that_differ_between_processes_are_refused(tmp_path, monkeypatch):
    """The multi-process save compares every process's fingerprint (the gather of two processes
    is simulated here: process 1 reports other bytes); a mismatch is refused before anything is
    written. (The real two-process runs are in test_train_reliability_multiprocess.py.)"""
    from jax.experimental import multihost_utils

    fp = ckpt_lib.state_fingerprint(_small_state(3))
    with monkeypatch.context() as m:
        m.setattr(jax, "process_count", lambda: 2)
        m.setattr(multihost_utils, "process_allgather", lambda x, tiled=False: np.stack([x, x ^ 1]))
        with pytest.raises(
            ckpt_lib.ReplicaMismatchError,
            match=r"differs between processes at step 3: processes \[1\] hold "
            r"other values than process 0",
        ):
            ckpt_lib._check_replicas(fp, 3)
        m.setattr(multihost_utils, "process_allgather", lambda x, tiled=False: np.stack([x, x]))
        ckpt_lib._check_replicas(fp, 3)  # equal replicas pass

    calls = []

    def refuse(fingerprint, step):
        calls.append((fingerprint, step))
        raise ckpt_lib.ReplicaMismatchError("simulated")

    monkeypatch.setattr(ckpt_lib, "_check_replicas", refuse)
    with Checkpointer(tmp_path / "ck") as ck:
        with pytest.raises(ckpt_lib.ReplicaMismatchError):
            ck.save(3, _small_state(3))
        assert calls == [(fp, 3)] and ck.all_steps() == []
    assert not (tmp_path / "ck" / "3").exists()


# ---------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted 12-step run (checkpoints 4, 8, 12) and a run stopped at step 8."""
    root = tmp_path_factory.mktemp("loop")
    train_and_evaluate(tiny_config(), root / "full")
    train_and_evaluate(tiny_config(), root / "part8", until_step=8)
    return root


def _copy_part8(runs, dest: Path) -> Path:
    shutil.copytree(runs / "part8", dest)
    return dest


_TEMPLATE = {}


def _final_state(workdir: Path):
    """The latest checkpoint of ``workdir``, restored (and verified) into the state structure of
    the module's runs (restore_checkpoint would compile the initializer again each time)."""
    if "state" not in _TEMPLATE:
        _TEMPLATE["state"] = restore_checkpoint(workdir)[1]
    with Checkpointer(workdir / "checkpoints") as ck:
        return ck.restore(ck.latest_step(), _TEMPLATE["state"])


def _assert_like_full(runs, workdir: Path):
    a, b = _final_state(runs / "full"), _final_state(workdir)
    assert int(b.step) == 12
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]
    assert strip(read_jsonl(workdir / "metrics.jsonl")) == strip(
        read_jsonl(runs / "full" / "metrics.jsonl")
    )


def _largest_data_file(step_dir: Path) -> Path:
    return max(
        (p for p in step_dir.rglob("*") if p.is_file() and "/d/" in str(p)),
        key=lambda p: p.stat().st_size,
    )


@pytest.fixture
def absl_warnings(caplog):
    caplog.set_level(logging.WARNING, logger="absl")
    return caplog


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_resume_falls_back_from_a_damaged_latest_checkpoint(runs, tmp_path, damage, absl_warnings):
    work = _copy_part8(runs, tmp_path / "w")
    DAMAGE[damage](_largest_data_file(work / "checkpoints" / "8"))
    out = train_and_evaluate(tiny_config(), work)
    assert out["step"] == 12
    msgs = [r.getMessage() for r in absl_warnings.records]
    warning = next(m for m in msgs if "is damaged" in m)
    assert f"checkpoint {work / 'checkpoints' / '8'} is damaged" in warning
    assert f"falling back to {work / 'checkpoints' / '4'} (step 4)" in warning
    assert str(work / "damaged_checkpoints" / "8") in warning
    assert (work / "damaged_checkpoints" / "8").is_dir()  # kept for inspection
    with Checkpointer(work / "checkpoints") as ck:
        assert ck.all_steps() == [4, 8, 12]  # 8 rewritten, undamaged
    _assert_like_full(runs, work)  # as if nothing happened


def test_no_usable_checkpoint_is_an_error_unless_restart(runs, tmp_path, absl_warnings):
    work = _copy_part8(runs, tmp_path / "w")
    for step in ("4", "8"):
        _truncate(_largest_data_file(work / "checkpoints" / step))
    before = sorted(str(p.relative_to(work)) for p in work.rglob("*"))
    with pytest.raises(NoUsableCheckpointError) as info:
        train_and_evaluate(tiny_config(), work)
    msg = str(info.value)
    assert msg.startswith("refusing to start from step 0: no usable checkpoint in ")
    assert f"{work / 'checkpoints' / '8'} is damaged" in msg
    assert f"{work / 'checkpoints' / '4'} is damaged" in msg
    assert "--config.restart=True" in msg
    assert sorted(str(p.relative_to(work)) for p in work.rglob("*")) == before  # untouched

    out = train_and_evaluate(tiny_config(restart=True), work)
    assert out["step"] == 12
    previous = [p for p in work.iterdir() if p.name.startswith("previous_")]
    assert len(previous) == 1
    assert {p.name for p in previous[0].iterdir()} >= {
        "checkpoints",
        "metrics.jsonl",
        "config.json",
    }
    assert any(
        "config.restart=True" in r.getMessage() and "starting from step 0" in r.getMessage()
        for r in absl_warnings.records
    )
    _assert_like_full(runs, work)


def test_restart_never_discards_a_usable_checkpoint(runs, tmp_path, absl_warnings):
    work = _copy_part8(runs, tmp_path / "w")
    out = train_and_evaluate(tiny_config(restart=True), work, until_step=9)
    assert out["step"] == 9
    assert any("config.restart=True has no effect" in r.getMessage() for r in absl_warnings.records)
    assert not [p for p in work.iterdir() if p.name.startswith("previous_")]
    assert [r["step"] for r in read_jsonl(work / "metrics.jsonl")][:4] == [2, 4, 6, 8]


def test_orbax_temporary_directory_from_a_kill_is_ignored(runs, tmp_path):
    work = _copy_part8(runs, tmp_path / "w")
    # a kill during the async save of step 12 leaves orbax's temporary directory, half written
    tmp = work / "checkpoints" / "12.orbax-checkpoint-tmp"
    shutil.copytree(work / "checkpoints" / "8", tmp)
    (tmp / "commit_success.txt").unlink()
    _truncate(_largest_data_file(tmp))
    with Checkpointer(work / "checkpoints") as ck:
        assert ck.all_steps() == [4, 8]
    assert train_and_evaluate(tiny_config(), work)["step"] == 12
    assert not tmp.exists()  # replaced by the real save of step 12
    _assert_like_full(runs, work)


def test_fresh_start_only_when_nothing_would_be_lost(runs, tmp_path, absl_warnings):
    # (a) an earlier run of the same config died before its first checkpoint (step 4): its
    # metrics lines (step 2) and a half-written first checkpoint are no progress: start over
    work = tmp_path / "early"
    (work / "checkpoints").mkdir(parents=True)
    shutil.copy(runs / "full" / "config.json", work / "config.json")
    (work / "metrics.jsonl").write_text(
        (runs / "full" / "metrics.jsonl").read_text().splitlines()[0] + "\n"
    )
    shutil.copytree(
        runs / "full" / "checkpoints" / "4", work / "checkpoints" / "4.orbax-checkpoint-tmp"
    )
    assert train_and_evaluate(tiny_config(), work, until_step=4)["step"] == 4
    assert any(
        "stopped before its first checkpoint (step 4); starting from step 0" in r.getMessage()
        for r in absl_warnings.records
    )

    # (b) metrics past the first checkpoint but no checkpoint at all: the checkpoints were lost
    work = tmp_path / "lost"
    work.mkdir()
    shutil.copy(runs / "part8" / "config.json", work / "config.json")
    shutil.copy(runs / "part8" / "metrics.jsonl", work / "metrics.jsonl")
    with pytest.raises(
        NoUsableCheckpointError,
        match=r"metrics\.jsonl reaches step 8, past the "
        r"first checkpoint step 4, but .* holds no "
        r"checkpoint",
    ):
        train_and_evaluate(tiny_config(), work)
    assert (work / "metrics.jsonl").read_text() == (runs / "part8" / "metrics.jsonl").read_text()
