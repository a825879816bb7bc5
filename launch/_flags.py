"""absl-flags parsing for the ``launch/`` commands that are also called as functions.

``python -m launch.train`` and ``launch.dynamics`` use ``absl.app.run`` on the global ``FLAGS``.
``launch.evaluate``, ``report``, ``reproduce`` and ``bench`` are also called in-process
(``main(["--workdir", ...])``, as the tests do), so each call defines its flags on a fresh
:class:`absl.flags.FlagValues` and parses it with :func:`parse`, which adds what those commands
had before: ``--help``, a ``PROG: error: MESSAGE`` line and exit code 2 on a bad command line, and
list flags that take several values after one flag name (``--seeds 0 1`` as well as absl's
``--seeds 0 --seeds 1``).

``-h`` / ``--help`` exits 0 with the usage, the module docstring as plain text and the flags, for
every command: :func:`parse` handles it for the in-process ones, :func:`app_flags_parser` for
those run through ``absl.app.run`` (absl's own ``--help`` exits 1 and prints raw docstrings).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence

from absl import app, flags

HELP_FLAGS = ("-h", "--help", "--helpshort", "--helpfull")
DEBUG_HELP = "show the traceback of an error instead of one line (or UL_JAX_DEBUG=1)"


def define_debug(fv: flags.FlagValues) -> None:
    """``--debug`` on ``fv``: errors with their traceback (see ``ul_jax.console``)."""
    flags.DEFINE_boolean("debug", False, DEBUG_HELP, flag_values=fv)


def wants_help(argv: Sequence[str]) -> bool:
    """Whether ``argv`` (without the program name) asks for help."""
    return any(a in HELP_FLAGS for a in argv)


def plain(doc: str) -> str:
    """``doc`` without reStructuredText markup: double backquotes dropped, ``:func:`a.b``` →
    ``a.b``, ``:func:`~a.b``` → ``b``."""
    doc = re.sub(r":[a-z]+:`~[\w.]*?(\w+)`", r"\1", doc)
    doc = re.sub(r":[a-z]+:`([^`]+)`", r"\1", doc)
    return doc.replace("``", "").strip()


def flags_help(fv: flags.FlagValues, names: Sequence[str] | None = None) -> str:
    """The help text of the flags ``names`` of ``fv`` (default: all but absl's own), one list."""
    listed = flags.FlagValues()
    for name in sorted(fv if names is None else names):
        listed[name] = fv[name]
    return listed.get_help(prefix="  ", include_special_flags=False)


def help_text(usage: str, doc: str, flag_help: str, extra: str = "") -> str:
    """``usage: …``, the plain docstring, the flags and ``extra``."""
    parts = [f"usage: {usage}", plain(doc), f"flags:\n{flag_help}"]
    return "\n\n".join(parts + ([extra.strip()] if extra.strip() else [])) + "\n"


def app_flags_parser(
    usage: str,
    doc: str,
    names: Sequence[str],
    parser: Callable[[list[str]], list[str]] | None = None,
    extra: Callable[[], str] = lambda: "",
) -> Callable[[list[str]], list[str]]:
    """A ``flags_parser`` for ``absl.app.run``: on ``-h`` / ``--help`` prints :func:`help_text`
    (the flags ``names`` of the global ``FLAGS``, then ``extra()``) to stdout and exits 0;
    otherwise returns ``parser(argv)`` (default: absl's ``app.parse_flags_with_usage``)."""

    def parse_or_help(argv: list[str]) -> list[str]:
        if wants_help(argv[1:]):
            sys.stdout.write(help_text(usage, doc, flags_help(flags.FLAGS, names), extra()))
            raise SystemExit(0)
        return (parser or app.parse_flags_with_usage)(argv)

    return parse_or_help


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
    if wants_help(argv):
        more = f" {positional} [{positional} ...]" if positional else ""
        sys.stdout.write(help_text(f"{prog} [flags]{more}", doc, flags_help(fv)))
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
