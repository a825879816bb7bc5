"""Train a classifier: ``python -m launch.train --config configs/X.py[:variant] --workdir DIR
[--config.field=value ...] [--until_step K] [--skip_nonfinite N] [--debug]``.

``--config_help`` lists every config field. Ends with a summary (final metrics, wall time, img/s,
the files written, the next command); an interactive terminal shows a progress bar
(``UL_JAX_PROGRESS=log`` keeps the log lines). An expected error is one line
(``python -m launch.train: error: ...``); ``--debug`` or ``UL_JAX_DEBUG=1`` shows its traceback.
Resume, exit codes (0; 1 an error; 2 a bad command line; 3 diverged; 75 preempted; 130 Ctrl-C)
and the multi-host environment variables: :mod:`ul_jax.train.cli`.
"""

from absl import app, flags

from launch._flags import app_flags_parser
from ul_jax.config import define_config_flag, describe_fields
from ul_jax.train import cli

_CONFIG = define_config_flag("config", "training config file[:variant] (fields: --config_help)")
_WORKDIR = flags.DEFINE_string("workdir", None, "work directory (checkpoints, metrics, config)")
_UNTIL = flags.DEFINE_integer(
    "until_step",
    None,
    "stop with a checkpoint at this global step (the schedule still "
    "spans the whole run); rerun without it to continue",
)
_SKIP = flags.DEFINE_integer(
    "skip_nonfinite",
    0,
    "skip up to this many consecutive non-finite updates before stopping (0: stop at the first)",
)
flags.DEFINE_bool(
    "config_help",
    False,
    "print every config field (type, default, allowed values, meaning) and exit",
)
_DEBUG = flags.DEFINE_bool(
    "debug", False, "show the traceback of an error instead of one line (or UL_JAX_DEBUG=1)"
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    cli.main(
        argv,
        _CONFIG.value,
        _WORKDIR.value,
        until_step=_UNTIL.value,
        skip_nonfinite=_SKIP.value,
        debug=_DEBUG.value,
    )


USAGE = (
    "python -m launch.train --config FILE[:VARIANT] --workdir DIR [--config.FIELD=VALUE ...] "
    "[flags]"
)

if __name__ == "__main__":
    app.run(
        main,
        flags_parser=app_flags_parser(
            USAGE,
            __doc__,
            ["config", "workdir", "until_step", "skip_nonfinite", "debug", "config_help"],
            cli.parse_flags,
            describe_fields,
        ),
    )
