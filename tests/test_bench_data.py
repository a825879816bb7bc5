"""The data-pipeline benchmark entry point runs and reports a positive throughput."""

import json

from launch import bench


def test_bench_main_synthetic(capsys):
    assert (
        bench.main(
            ["data", "--source", "synthetic", "--steps", "5", "--warmup", "2", "--batch-size", "32"]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["global_batch_size"] == 32 and out["timed_steps"] == 5
    assert out["images_per_s"] > 0 and out["ms_per_batch"] > 0


def test_bench_main_imagenet100_synthetic(capsys):
    """The ImageNet-100 comparison runs end to end on a few synthetic JPEG records (the
    numbers themselves are only meaningful from ``python -m launch.bench``)."""
    argv = ["data", "--dataset", "imagenet100-synthetic", "--records", "8", "--batch-size", "4"]
    argv += ["--steps", "1", "--warmup", "1", "--image-size", "32", "--workers", "1"]
    assert bench.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["records"] == 8 and out["global_batch_size"] == 4 and out["timed_steps"] == 1
    rates = out["images_per_s"]
    assert set(rates) == {
        "legacy_threads_1",
        f"legacy_threads_{out['cpu_count']}",
        "grain_workers_0_threads_1",
        f"grain_workers_0_threads_{out['cpu_count']}",
        "grain_workers_1_threads_1",
    }
    assert all(v > 0 for v in rates.values())
    assert out["ratio_to_legacy_threads_1"]["legacy_threads_1"] == 1.0
    assert out["mean_record_kib"] > 1 and out["index_scan_s"] > 0
