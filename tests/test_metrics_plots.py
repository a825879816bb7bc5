"""Figures are written as non-empty PNGs of the expected size."""

import numpy as np
import pytest
from PIL import Image

from ul_jax import metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path, min_bytes=5_000):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == PNG_MAGIC
    assert len(data) > min_bytes
    with Image.open(path) as img:
        w, h = img.size
        arr = np.asarray(img.convert("L"))
    assert w > 200 and h > 200
    assert arr.std() > 5  # not a blank canvas


def test_train_reliability_diagram(tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5000, 10)) * 3
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    labels = np.where(rng.uniform(size=5000) < 0.6, probs.argmax(1), rng.integers(0, 10, 5000))
    bins = metrics.calibration_bins(probs, labels)
    path = metrics.plot_reliability_diagram(bins, tmp_path / "sub" / "reliability.png", title="CE")
    _assert_png(path)


def test_score_histograms(tmp_path):
    rng = np.random.default_rng(1)
    s_in = {"energy": rng.normal(8, 1, 2000), "feature_norm": rng.gamma(9, 1, 2000)}
    s_out = {"energy": rng.normal(5, 1.5, 1500), "feature_norm": rng.gamma(4, 1, 1500)}
    _assert_png(
        metrics.plot_score_histogram(s_in["energy"], s_out["energy"], tmp_path / "energy.png")
    )
    _assert_png(
        metrics.plot_ood_histograms(s_in, s_out, tmp_path / "fig3.png", title="CIFAR-10 vs SVHN")
    )


def test_plot_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="CalibrationBins"):
        metrics.plot_reliability_diagram({"counts": [1]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="ood_scores is empty"):
        metrics.plot_score_histogram([1.0, 2.0], [], tmp_path / "x.png")
    with pytest.raises(ValueError, match="score 'msp' missing"):
        metrics.plot_ood_histograms(
            {"energy": [1.0]}, {"energy": [0.0]}, tmp_path / "x.png", names=("msp",)
        )
