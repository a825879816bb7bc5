"""Draw the training curves of runs: ``python -m launch.plot WORKDIR [WORKDIR ...] [--out FILE]``.

Reads each work directory's ``metrics.jsonl`` and writes one PNG with the loss, the train / test /
validation accuracy, the learning rate, the mean ‖h‖ and, for runs that log them, the diagnostics
(cos(h, w_y), the last BatchNorm's ‖γ‖, the gradient norm, Theorem 6's distance, ECE); several runs
are overlaid, one colour each, labelled by their directory. Default ``--out``: ``WORKDIR/curves.png``
for one run, ``curves.png`` in the current directory for several. Everything is done by
:func:`ul_jax.train.plot_curves`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import flags

from launch._flags import error, parse
from ul_jax.train.plot import plot_curves

PROG = "python -m launch.plot"


def main(argv: list[str] | None = None) -> int:
    fv = flags.FlagValues()
    flags.DEFINE_string(
        "out",
        None,
        "PNG to write (default: WORKDIR/curves.png for one run, ./curves.png for several)",
        flag_values=fv,
    )
    runs = parse(fv, argv, PROG, __doc__, positional="WORKDIR")
    out = fv.out or (Path(runs[0]) / "curves.png" if len(runs) == 1 else Path("curves.png"))
    try:
        path = plot_curves(runs, out)
    except (FileNotFoundError, ValueError) as e:
        error(PROG, e)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
