"""Regenerate a layer-peeled-model figure: ``python -m launch.dynamics --config configs/dynamics/fig1.py``.

Any config field can be overridden, e.g. ``--config.steps=5000 --config.out_dir=/tmp/figs``.
"""

from absl import app

from launch._flags import app_flags_parser
from ul_jax import ufm_figures
from ul_jax.config import define_config_flag

_CONFIG = define_config_flag("config", "Figure config (configs/dynamics/*.py).")


def main(argv):
    del argv
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
            "python -m launch.dynamics --config configs/dynamics/FIG.py [--config.FIELD=VALUE ...]",
            __doc__,
            ["config"],
        ),
    )
