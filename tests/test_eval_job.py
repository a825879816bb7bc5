"""The evaluation job (ul_jax.eval, launch.evaluate, launch.report) on one tiny, real,
long-tailed digits run: streamed metrics against the all-at-once metrics of a direct forward
pass, against the training loop's own eval, the files it writes, the report and bad inputs.
The OOD sets on their own: tests/test_data_ood.py."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from configs import digits
from launch import evaluate as evaluate_cli
from launch import report as report_cli
from ul_jax import metrics
from ul_jax.data import channel_stats, load_dataset, normalize, resolve_image_folder
from ul_jax.data.ood import OOD_SETS, check_ood_names, load_ood_images
from ul_jax.eval import CONVENTIONS, SCORE_NAMES, evaluate_run, format_report, load_eval
from ul_jax.train import classifier_weights, read_jsonl, restore_checkpoint, train_and_evaluate

REPO = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 8
IMBALANCE = 10.0  # digits train counts 130, 100, 77, …, 16, 13: many/medium/few all occur
EVAL_BATCH = 128  # 450 test images → 4 batches, the last one padded (66 real rows)


def _cifar10_available() -> bool:
    try:
        resolve_image_folder("cifar10")
        return True
    except FileNotFoundError:
        return False


CIFAR10 = _cifar10_available()
needs_cifar10 = pytest.mark.skipif(
    not CIFAR10,
    reason="no offline CIFAR-10 archive (<data_dir>/cifar10.tar.gz): the far-OOD "
    "set of the digits run is CIFAR-10 test",
)
OOD = ("uniform_noise",) + (("cifar10",) if CIFAR10 else ())


def _config():
    c = digits.get_config("ul_pal")
    c.data.image_size = IMAGE_SIZE
    c.data.crop_padding = 1
    c.data.augment = "none"
    c.data.imbalance_ratio = IMBALANCE
    c.model.width_multiplier = 0.25  # p = 16 features
    c.batch_size = 64
    c.eval_batch_size = EVAL_BATCH
    c.num_train_steps = 40
    c.log_every = 10
    c.eval_every = 20
    c.checkpoint_every = 20  # checkpoints (and loop evals) at steps 20 and 40
    c.keep_checkpoints = 3
    c.tensorboard = False
    return c


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("eval") / "run"
    out = train_and_evaluate(_config(), workdir)
    assert out["step"] == 40
    return workdir, out


@pytest.fixture(scope="session")
def result(run, tmp_path_factory):
    workdir, _ = run
    return evaluate_run(workdir, ood=OOD)


def _forward_all(model, state, images, mean, std):
    x = normalize(images, mean, std)
    logits, features = model.apply(state.variables(), x, train=False)
    return np.asarray(logits, np.float32), np.asarray(features, np.float32)


@pytest.fixture(scope="session")
def direct(run):
    """Everything computed all at once, independently of ul_jax.eval's data path."""
    workdir, _ = run
    model, state, _ = restore_checkpoint(workdir)
    train = load_dataset(
        "digits", "train", source="digits", image_size=IMAGE_SIZE, imbalance_ratio=IMBALANCE
    )
    test = load_dataset("digits", "test", source="digits", image_size=IMAGE_SIZE)
    mean, std = channel_stats(train.images)
    mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    z, h = _forward_all(model, state, test.images, mean, std)
    out = {
        "logits": z,
        "features": h,
        "labels": np.asarray(test.labels),
        "train_counts": train.class_counts(),
        "W": np.asarray(classifier_weights(state)),
        "b": (
            np.asarray(state.params["head"]["bias"])
            if "bias" in state.params.get("head", {})
            else None
        ),
        "ood": {},
    }  # PAL heads have no bias (configs/common.py)
    noise, _ = load_ood_images("uniform_noise", (IMAGE_SIZE, IMAGE_SIZE, 3))
    out["ood"]["uniform_noise"] = _forward_all(model, state, noise, mean, std)
    if CIFAR10:  # the loader's own decode-time resize, not ul_jax.data.ood.resize_images
        cifar = load_dataset("cifar10", "test", source="image_folder", image_size=IMAGE_SIZE)
        out["ood"]["cifar10"] = _forward_all(model, state, cifar.images, mean, std)
    return out


def _scores(logits, features):
    return {
        "msp": np.asarray(metrics.msp_score(logits)),
        "energy": np.asarray(metrics.energy_score(logits, 1.0)),
        "feature_norm": np.asarray(metrics.feature_norm_score(features)),
    }


# ---------------------------------------------------------------------------------------------
def test_files_written(run, result):
    workdir, _ = run
    path = workdir / "eval.json"
    assert Path(result["path"]) == path and path.is_file()
    stored = json.loads(path.read_text())
    assert stored == {k: v for k, v in result.items() if k != "path"}
    assert stored["conventions"] == CONVENTIONS
    for key in ("calibration", "ood_metrics", "ood_scores", "neural_collapse", "shot_groups"):
        assert key in stored["conventions"]
    assert stored["run"]["step"] == 40 and stored["run"]["variant"] == "ul_pal"
    expected = {"json", "reliability_diagram"} | {f"ood_hist_{n}" for n in OOD}
    assert set(stored["files"]) == expected
    for key, name in stored["files"].items():
        f = workdir / name
        assert f.is_file() and f.stat().st_size > 1000, key
        if name.endswith(".png"):
            assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(stored["ood"]) == set(OOD)


def test_top1_equals_training_loop_eval(run, result):
    """One implementation per metric: the loop's evaluation (``eval_step`` → the streaming
    accumulators) and the job agree on the same (final) checkpoint."""
    _, out = run
    c = result["classification"]
    assert c["num_examples"] == out["eval/count"] == 450
    assert c["top1"] == pytest.approx(out["eval/accuracy"], abs=1e-6)
    assert result["train_loop_eval"]["accuracy"] == pytest.approx(out["eval/accuracy"], abs=1e-12)
    assert out["eval/ece"] == pytest.approx(result["calibration"]["ece"], abs=1e-6)
    nc = result["neural_collapse"]
    assert out["eval/feature_norm"] == pytest.approx(nc["mean_feature_norm"], rel=1e-6)
    assert "eval/nonfinite_count" not in out


def test_prediction_share_equals_the_direct_argmax_histogram(run, direct):
    _, out = run
    pred = np.argmax(direct["logits"], -1)
    want = np.bincount(pred, minlength=10) / len(pred)
    np.testing.assert_allclose(out["eval/class_prediction_share"], want, atol=1e-9)


def test_accuracy_and_calibration_match_all_at_once(result, direct):
    z, y = direct["logits"], direct["labels"]
    c = result["classification"]
    assert c["top1"] == pytest.approx(metrics.topk_accuracy(z, y, 1), abs=1e-12)
    assert c["top5"] == pytest.approx(metrics.topk_accuracy(z, y, 5), abs=1e-12)
    per_class = metrics.per_class_accuracy(z, y)
    np.testing.assert_allclose(c["per_class_accuracy"], per_class, atol=1e-12)
    # long-tailed groups from the run's own training-class counts
    counts = direct["train_counts"]
    assert c["train_class_counts"] == counts.tolist()
    want = metrics.shot_group_accuracy(per_class, counts)
    assert (want["num_many"], want["num_medium"], want["num_few"]) == (1, 7, 2)
    for k, v in want.items():
        assert c["shot_groups"][k] == pytest.approx(v, abs=1e-12), k
    for k, v in metrics.index_range_group_accuracy(per_class).items():
        assert c["index_groups"][k] == pytest.approx(v, abs=1e-12), k
    probs = np.asarray(jax.nn.softmax(z, axis=-1))
    cal = result["calibration"]
    assert cal["num_bins"] == 15
    assert cal["ece"] == pytest.approx(metrics.expected_calibration_error(probs, y), abs=1e-6)
    assert cal["mce"] == pytest.approx(metrics.maximum_calibration_error(probs, y), abs=1e-6)
    assert sum(cal["bin_counts"]) == 450


def test_neural_collapse_matches_all_at_once(result, direct):
    want = metrics.neural_collapse(direct["features"], direct["labels"], direct["W"], direct["b"])
    got = result["neural_collapse"]
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-4, abs=1e-6), k
    # PAL keeps the fixed simplex ETF: the Fig. 19 prototype diagnostics say so
    assert got["prototype_norm_ratio"] == pytest.approx(1.0, abs=1e-5)
    assert got["min_prototype_angle_deg"] == pytest.approx(96.379, abs=1e-2)


@pytest.mark.parametrize("name", OOD)
def test_ood_metrics_match_all_at_once(result, direct, name):
    s_in = _scores(direct["logits"], direct["features"])
    s_out = _scores(*direct["ood"][name])
    o = result["ood"][name]
    assert o["num_examples"] == len(s_out["msp"])
    assert set(o["metrics"]) == set(SCORE_NAMES)
    for s in SCORE_NAMES:
        want = metrics.ood_metrics(s_in[s], s_out[s])
        for k, v in want.items():
            assert o["metrics"][s][k] == pytest.approx(v, abs=1e-6), (s, k)
        assert o["score_stats"]["ood"][s]["mean"] == pytest.approx(np.mean(s_out[s]), rel=1e-5)


@needs_cifar10
def test_cifar10_far_ood_is_resized_and_named_honestly(result):
    o = result["ood"]["cifar10"]
    assert o["native_size"] == [32, 32] and o["resized"] and o["image_shape"] == [8, 8, 3]
    assert o["num_examples"] == 10000 and o["source"] == "image_folder"
    assert "CIFAR-10" in o["description"] and "SVHN" not in o["description"]


def test_step_batch_size_and_cli(run, result, tmp_path, capsys):
    workdir, _ = run
    # the latest step again, other batch size (64 → last batch of 2 real rows), other out_dir
    again = evaluate_run(
        workdir, step=40, ood=("uniform_noise",), batch_size=64, out_dir=tmp_path, plots=False
    )
    assert Path(again["path"]) == tmp_path / "eval_step40.json"
    assert again["test_set"]["batch_size"] == 64 and again["files"] == {"json": "eval_step40.json"}
    for k in ("top1", "top5"):
        assert again["classification"][k] == result["classification"][k]
    assert again["calibration"]["ece"] == pytest.approx(result["calibration"]["ece"], abs=1e-6)
    assert again["neural_collapse"]["nc1"] == pytest.approx(
        result["neural_collapse"]["nc1"], rel=1e-4
    )
    for s in SCORE_NAMES:
        for k, v in result["ood"]["uniform_noise"]["metrics"][s].items():
            assert again["ood"]["uniform_noise"]["metrics"][s][k] == pytest.approx(v, abs=1e-6)

    # the CLI on the older checkpoint, compared with the loop's eval logged at step 20
    rc = evaluate_cli.main(
        [
            "--workdir",
            str(workdir),
            "--step",
            "20",
            "--ood",
            "uniform_noise",
            "--out_dir",
            str(tmp_path),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    step20 = json.loads((tmp_path / "eval_step20.json").read_text())
    loop20 = [
        r for r in read_jsonl(workdir / "metrics.jsonl") if r["step"] == 20 and "eval/accuracy" in r
    ]
    assert step20["run"]["step"] == 20
    assert step20["classification"]["top1"] == pytest.approx(loop20[0]["eval/accuracy"], abs=1e-6)
    assert f"top-1 {100 * step20['classification']['top1']:.2f}" in printed
    assert "uniform_noise" in printed and "FPR95" in printed and "many" in printed
    assert (tmp_path / "reliability_step20.png").stat().st_size > 1000

    # the report: a markdown table with one row per eval file
    rc = report_cli.main([str(workdir), str(tmp_path / "eval_step20.json"), "--markdown"])
    assert rc == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert len(table) == 4  # header, separator, two rows
    header = [h.strip() for h in table[0].strip("|").split("|")]
    assert header[:9] == ["run", "method", "data", "step", "top-1", "many", "med.", "few", "ECE"]
    assert "uniform_noise FPR95↓" in header
    rows = [[v.strip() for v in line.strip("|").split("|")] for line in table[2:]]
    for row, res in zip(rows, (result, step20)):
        assert row[1] == "ul_pal" and row[2] == "digits-LT ρ=10"
        assert row[3] == str(res["run"]["step"])
        assert row[4] == f"{100 * res['classification']['top1']:.2f}"
        assert row[5] == f"{100 * res['classification']['shot_groups']['many']:.2f}"
        assert row[8] == f"{100 * res['calibration']['ece']:.2f}"
        m = res["ood"]["uniform_noise"]["metrics"]
        j = header.index("uniform_noise AUROC↑")
        assert row[j] == " / ".join(f"{100 * m[s]['auroc']:.2f}" for s in SCORE_NAMES)
    # a run without that OOD set gets dashes, not numbers
    lines = format_report([result, {**step20, "ood": {}}]).splitlines()  # plain text
    assert lines[2].count("–") == 0 and lines[3].count("–") == 3 * len(OOD)


def test_report_command_line(run, result):
    workdir, _ = run
    proc = subprocess.run(
        [sys.executable, "-m", "launch.report", str(workdir), "--markdown"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"| {100 * result['classification']['top1']:.2f} |" in proc.stdout


def test_bad_inputs(run, tmp_path, capsys):
    workdir, _ = run
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        evaluate_run(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json in .*empty"):
        evaluate_run(empty)
    shutil.copy(workdir / "config.json", empty / "config.json")
    with pytest.raises(FileNotFoundError, match="no checkpoint in .*empty/checkpoints"):
        evaluate_run(empty)
    assert not (empty / "checkpoints").exists()  # nothing was created
    with pytest.raises(FileNotFoundError, match=r"step 7 .*available steps: \[20, 40\]"):
        evaluate_run(workdir, step=7)
    with pytest.raises(ValueError, match="unknown OOD set 'svhn'") as e:
        evaluate_run(workdir, ood=("svhn",))
    for name in OOD_SETS:
        assert name in str(e.value)
    with pytest.raises(ValueError, match="cannot be used for a run trained on 'digits'"):
        evaluate_run(workdir, ood=("digits_far_ood",))
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_run(workdir, batch_size=0)
    assert check_ood_names(["cifar10", "uniform_noise", "cifar10"], "digits") == (
        "cifar10",
        "uniform_noise",
    )
    with pytest.raises(ValueError, match="cannot be used for a run trained on 'cifar10'"):
        check_ood_names(["cifar10_split_near_ood"], "cifar10")

    with pytest.raises(SystemExit) as e:
        evaluate_cli.main(["--workdir", str(missing)])
    assert e.value.code == 2
    assert f"work directory {missing} does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        evaluate_cli.main(["--workdir", str(workdir), "--ood", "SVHN"])
    assert e.value.code == 2 and "valid OOD sets: svhn_cropped" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        report_cli.main([str(empty)])
    assert e.value.code == 2 and "no eval.json in" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_eval(missing / "eval.json")


def test_long_tailed_run_with_validation_split_uses_the_trained_split_counts(tmp_path):
    """With a validation hold-out the long-tailed subset is drawn from the rest, so its class
    counts differ from load_dataset(imbalance_ratio=...) on the full split; the many/medium/few
    groups must use the split the loop trained on."""
    from helpers import tiny_config

    from ul_jax.train import load_train_data

    c = tiny_config(
        **{"data.imbalance_ratio": 4.0, "data.validation_per_class": 10, "num_train_steps": 4},
        checkpoint_every=4,
        eval_every=4,
    )
    train_and_evaluate(c, tmp_path / "lt")
    res = evaluate_run(tmp_path / "lt", ood=())
    counts = load_train_data(c).class_counts
    full = load_dataset("digits", "train", source="digits", image_size=8, imbalance_ratio=4.0)
    assert counts.sum() < len(full)  # 10 per class held out before the subset
    assert res["classification"]["train_class_counts"] == counts.tolist()
