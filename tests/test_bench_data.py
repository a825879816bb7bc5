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
