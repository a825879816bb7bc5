"""Draw the training curves of runs: ``python -m launch.plot WORKDIR [WORKDIR ...] [--out FILE]``.

Reads each work directory's ``metrics.jsonl`` and writes one PNG with the loss, the train / test /
validation accuracy, the learning rate, the mean ‖h‖ and, for runs that log them, the diagnostics
(cos(h, w_y), the last BatchNorm's ‖γ‖, the gradient norm, Theorem 6's distance, ECE); several runs
are overlaid, one colour each, labelled by their directory. Default ``--out``: ``WORKDIR/curves.png``
for one run, ``curves.png`` in the current directory for several. Everything is done by
:func:`ul_jax.train.plot_curves`. Errors are one line (``--debug``: the traceback); exit codes 0,
1, 2 (a bad command line, or a directory without ``metrics.jsonl``): :mod:`ul_jax.console`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import flags

from launch._flags import define_debug, parse
from ul_jax.console import one_line_errors
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
    define_debug(fv)
    runs = parse(fv, argv, PROG, __doc__, positional="WORKDIR")
    out = fv.out or (Path(runs[0]) / "curves.png" if len(runs) == 1 else Path("curves.png"))
    with one_line_errors(PROG, debug=fv.debug, usage_errors=(FileNotFoundError, ValueError)):
        path = plot_curves(runs, out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
