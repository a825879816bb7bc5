"""Evaluate a trained run: ``python -m launch.evaluate --workdir RUN [--step K] [--ood NAME ...]
[--batch_size B] [--out_dir DIR] [--ood_source SRC] [--ood_data_dir DIR] [--no_plots]``.

Prints a readable table and writes ``eval.json`` (``eval_step<K>.json`` with ``--step``), a
reliability diagram and the ID-vs-OOD histograms into the work directory (or ``--out_dir``).
Everything is done by :func:`ul_jax.evaluation.evaluate_run`; see its module docstring for the
metrics and :data:`ul_jax.evaluation.CONVENTIONS` for their definitions.
"""

from __future__ import annotations

import argparse
import sys

from ul_jax.evaluation import OOD_SETS, evaluate_run, format_eval


def _parser() -> argparse.ArgumentParser:
    epilog = "OOD sets (--ood):\n" + "\n".join(f"  {k:24s} {s.description}"
                                               for k, s in OOD_SETS.items())
    p = argparse.ArgumentParser(prog="python -m launch.evaluate",
                                description=__doc__.split("\n\n")[0], epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, help="work directory of python -m launch.train")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--ood", nargs="+", action="extend", default=[], metavar="NAME",
                   help="OOD set(s) to score against the test set (see below)")
    p.add_argument("--batch_size", type=int, default=None,
                   help="eval batch size (default: the run's eval_batch_size)")
    p.add_argument("--out_dir", default=None, help="output directory (default: --workdir)")
    p.add_argument("--ood_source", default=None, choices=("tfds", "image_folder"),
                   help="loader of the OOD sets (default: per set, see ul_jax.evaluation)")
    p.add_argument("--ood_data_dir", default=None, help="data directory of the OOD loader")
    p.add_argument("--no_plots", action="store_true", help="skip the PNG figures")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        result = evaluate_run(args.workdir, step=args.step, ood=args.ood,
                              batch_size=args.batch_size, out_dir=args.out_dir,
                              ood_source=args.ood_source, ood_data_dir=args.ood_data_dir,
                              plots=not args.no_plots)
    except (FileNotFoundError, ValueError) as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    print(format_eval(result))
    print(f"\nwrote {result['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
