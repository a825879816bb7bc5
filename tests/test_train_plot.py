"""Training curves without TensorBoard: ``ul_jax.train.plot`` and ``python -m launch.plot`` on a
real digits run, the overlay of two work directories, the panels drawn, and the one-line error for
a directory without ``metrics.jsonl``."""

import logging
import math

import numpy as np
import pytest
from helpers import tiny_config
from PIL import Image

from launch import plot as plot_cli
from ul_jax.train import plot, train_and_evaluate
from ul_jax.train.writers import JsonlWriter


def _png_size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.verify()
        return im.size


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A finished 12-step run of :func:`tiny_config` (UL + PAL, no EFR)."""
    run = tmp_path_factory.mktemp("plot") / "digits_ul_pal"
    train_and_evaluate(tiny_config(), run)
    return run


def _synthetic_run(workdir, scale: float = 1.0):
    """A ``metrics.jsonl`` with EFR diagnostics, a non-finite loss and a per-class list."""
    w = JsonlWriter(workdir / "metrics.jsonl")
    for s in (5, 10, 15):
        w.write(
            s,
            {
                "train/loss": math.nan if s == 10 else scale / s,
                "train/accuracy": 0.1 * s / 5,
                "train/lr": 0.1 / s,
                "train/feature_norm": float(s),
                "eval/accuracy": 0.05 * s / 5,
                "eval/theorem6_distance": 1.0 / s,
                "val/ece": 0.01 * s,
                "eval/class_feature_norm": [1.0, 2.0],
            },
        )
    w.close()
    return workdir


def test_a_finished_digits_run_leaves_curves_png(digits_run):
    width, height = _png_size(digits_run / "curves.png")
    assert width > 600 and height > 400
    with Image.open(digits_run / "curves.png") as im:  # drawn, not blank
        assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 50


def test_read_curves(tmp_path, digits_run):
    curves = plot.read_curves(_synthetic_run(tmp_path))
    steps, loss = curves["train/loss"]
    assert steps.tolist() == [5, 10, 15] and loss[0] == 0.2 and math.isnan(loss[1])
    assert "eval/class_feature_norm" not in curves  # lists are not curves
    real = plot.read_curves(digits_run)
    assert real["train/loss"][0].tolist() == [2, 4, 6, 8, 10, 12]
    assert real["eval/accuracy"][0].tolist() == [6, 12]


def test_panels_follow_what_the_runs_logged(tmp_path, digits_run):
    real = plot.read_curves(digits_run)
    titles = [t for t, _ in plot.panels_for([real])]
    assert titles[:4] == ["loss", "accuracy", "learning rate", "mean ‖h‖"]
    assert "last BN ‖γ‖" in titles and "gradient norm" in titles and "ECE" in titles
    assert "Theorem 6 distance" not in titles  # no EFR in this run
    both = [t for t, _ in plot.panels_for([real, plot.read_curves(_synthetic_run(tmp_path))])]
    assert "Theorem 6 distance" in both and set(titles) < set(both)


def test_overlay_of_two_workdirs(tmp_path, digits_run, capsys):
    other = _synthetic_run(tmp_path / "efr_run" / "seed0")
    out = tmp_path / "figs" / "both.png"
    assert plot_cli.main([str(digits_run), str(other), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    _png_size(out)
    # one run alone, default --out: WORKDIR/curves.png
    assert plot_cli.main([str(other)]) == 0
    _png_size(other / "curves.png")


def test_run_labels_are_the_directory_names_made_unique():
    assert plot.run_labels(["/r/ce", "/r/ul_pal"]) == ["ce", "ul_pal"]
    assert plot.run_labels(["/r/ce/seed0", "/r/ul/seed0", "/x/seed1"]) == [
        "ce/seed0",
        "ul/seed0",
        "seed1",
    ]
    with pytest.raises(ValueError, match="1 labels for 2 work directories"):
        plot.plot_curves(["/r/a", "/r/b"], "/tmp/x.png", labels=["a"])


def test_a_workdir_without_metrics_is_a_one_line_error(tmp_path, capsys):
    empty = tmp_path / "not_a_run"
    empty.mkdir()
    with pytest.raises(SystemExit) as e:
        plot_cli.main([str(empty)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith("python -m launch.plot: error: ")
    assert f"{empty / 'metrics.jsonl'}: no such file" in err
    assert not (empty / "curves.png").exists()
    (empty / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="metrics.jsonl has no logged step"):
        plot.plot_curves([empty], tmp_path / "x.png")


def test_a_plot_failure_at_the_end_of_a_run_only_warns(tmp_path, monkeypatch, caplog):
    run = _synthetic_run(tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(plot, "plot_curves", broken)
    with caplog.at_level(logging.WARNING):
        assert plot.write_run_curves(run) is None
    assert "could not draw" in caplog.text and "RuntimeError: no fonts" in caplog.text
    monkeypatch.undo()
    assert plot.write_run_curves(run) == run / "curves.png"
    _png_size(run / "curves.png")
