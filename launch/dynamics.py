"""Regenerate a layer-peeled-model figure: ``python -m launch.dynamics --config configs/dynamics/fig1.py``.

Any config field can be overridden, e.g. ``--config.steps=5000 --config.out_dir=/tmp/figs``.
Errors are one line (``--debug`` or ``UL_JAX_DEBUG=1``: the traceback); exit codes 0, 1 (an
error), 2 (a bad command line): :mod:`ul_jax.console`.
"""

import functools

from absl import app, flags

from launch._flags import DEBUG_HELP, app_flags_parser
from ul_jax import console, ufm_figures
from ul_jax.config import define_config_flag

PROG = "python -m launch.dynamics"
_CONFIG = define_config_flag("config", "Figure config (configs/dynamics/*.py).")
_DEBUG = flags.DEFINE_bool("debug", False, DEBUG_HELP)


def main(argv):
    with console.one_line_errors(PROG, debug=_DEBUG.value):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        config = _CONFIG.value
        result = ufm_figures.run(config)
        json_path, png_path = ufm_figures.save(result, config.out_dir)
    for key, value in result["timing"].items():
        print(f"{key}: {value:.2f}")
    for row in result.get("growth", []):
        print(
            f"  {config.sweep_field}: gamma={row['gamma']:.6g} lr={row['lr']:.3g} s={row['s']:.3g} "
            f"lambda={row['weight_decay']:.4g}  late log-growth of |Z| per step: "
            f"measured {row['measured']:.6e}  predicted {row['predicted']:.6e}  "
            f"rel. error {row['rel_error']:.2e}"
        )
    if "max_rel_gap_closed_vs_sim" in result:
        print("max relative gap closed form vs simulated GD:", result["max_rel_gap_closed_vs_sim"])
    print(f"wrote {json_path} and {png_path}")


if __name__ == "__main__":
    app.run(
        main,
        flags_parser=app_flags_parser(
            f"{PROG} --config configs/dynamics/FIG.py [--config.FIELD=VALUE ...]",
            __doc__,
            ["config", "debug"],
            functools.partial(console.parse_flags, prog=PROG),
        ),
    )
