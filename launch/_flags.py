"""absl-flags parsing for the ``launch/`` commands that are also called as functions.

``python -m launch.train`` and ``launch.dynamics`` use ``absl.app.run`` on the global ``FLAGS``.
``launch.evaluate``, ``report``, ``reproduce`` and ``bench`` are also called in-process
(``main(["--workdir", ...])``, as the tests do), so each call defines its flags on a fresh
:class:`absl.flags.FlagValues` and parses it with :func:`parse`, which adds what those commands
had before: ``--help``, a ``PROG: error: MESSAGE`` line and exit code 2 on a bad command line, and
list flags that take several values after one flag name (``--seeds 0 1`` as well as absl's
``--seeds 0 --seeds 1``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags


def error(prog: str, message) -> None:
    """Exits with code 2 after printing ``PROG: error: MESSAGE`` to stderr."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def expand_lists(argv: Sequence[str], names: Sequence[str]) -> list[str]:
    """``--NAME a b`` → ``--NAME a --NAME b`` for every ``NAME`` in ``names`` (the values run up
    to the next argument that starts with ``-``; ``--`` ends the flags)."""
    out, current, first = [], None, False
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + list(argv[i:])
        if arg.startswith("-"):
            current = arg[2:] if arg.startswith("--") and arg[2:] in names else None
            first = True
        elif current is not None:
            if not first:
                out.append(f"--{current}")
            first = False
        out.append(arg)
    return out


def parse(
    fv: flags.FlagValues,
    argv: Sequence[str] | None,
    prog: str,
    doc: str = "",
    *,
    lists: Sequence[str] = (),
    positional: str | None = None,
) -> list[str]:
    """Parses ``argv`` (default ``sys.argv[1:]``) into ``fv``; returns the positional arguments.

    ``lists``: multi-value flags that also take ``--NAME a b``. ``positional``: name of the
    positional arguments in messages (at least one is required); ``None``: none are accepted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "--helpshort", "--helpfull") for a in argv):
        more = f" {positional} [{positional} ...]" if positional else ""
        print(f"usage: {prog} [flags]{more}\n\n{doc.strip()}\n\nflags:\n{fv.get_help()}")
        raise SystemExit(0)
    try:
        rest = fv([prog, *expand_lists(argv, lists)])[1:]
    except flags.Error as e:
        error(prog, e)
    if positional is None and rest:
        error(prog, f"unrecognized arguments: {' '.join(rest)}")
    if positional is not None and not rest:
        error(prog, f"the following arguments are required: {positional}")
    return rest
