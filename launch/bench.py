"""Benchmarks: ``python -m launch.bench ufm [--steps N] [--dtype float32|float64] [--json F]``,
``python -m launch.bench train [--model resnet18] [--batch 128] [--dtype float32|bfloat16]`` or
``python -m launch.bench data [...]``.

Speed is only measured here, never in tests. Each figure is reported next to a baseline measured
in the same run (these machines are noisy), with the device it ran on.
"""

import argparse
import json
import sys


def _ufm(argv):
  from configs.dynamics import fig1
  from ul_jax import bench

  ap = argparse.ArgumentParser(prog="python -m launch.bench ufm")
  ap.add_argument("--steps", type=int, default=50_000)
  ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
  ap.add_argument("--json", default=None, help="also write the numbers to this file")
  args = ap.parse_args(argv)
  out = bench.ufm_benchmark(fig1.get_config(), steps=args.steps, dtype=args.dtype)
  print(json.dumps(out, indent=2))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=2)
  return 0


def _train(argv):
  from ul_jax import bench_train

  ap = argparse.ArgumentParser(prog="python -m launch.bench train")
  ap.add_argument("--model", default="resnet18")
  ap.add_argument("--batch", type=int, default=128)
  ap.add_argument("--steps", type=int, default=5)
  ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  ap.add_argument("--json", default=None, help="also write the numbers to this file")
  args = ap.parse_args(argv)
  out = bench_train.train_benchmark(args.model, args.batch, args.steps, args.dtype)
  print(json.dumps(out, indent=2))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=2)
  return 0


def _data(argv):
  from launch import bench_data

  return bench_data.main(argv) or 0


SUITES = {"ufm": _ufm, "train": _train, "data": _data}


def main(argv=None):
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] not in SUITES:
    print(f"usage: python -m launch.bench {{{'|'.join(SUITES)}}} [options]", file=sys.stderr)
    return 2
  return SUITES[argv[0]](argv[1:])


if __name__ == "__main__":
  sys.exit(main())
