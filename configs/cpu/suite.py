"""The runs of ``python -m launch.reproduce --suite cpu`` (order = run order; see
``docs/REPRODUCTION.md``). Each run is ``ul_jax.reproduce.Run(name, config, claims, setting,
variant, ood)``; configs are ``configs/cpu/cifar10.py`` arguments.

Budget (measured, see the docs): ≈ 6 min per run on a loaded 2-core CPU, 18 runs ≈ 100 min per
seed. ``--suite cpu_step`` adds the step-imbalance (ρ = 100) runs of Table 2 / Table 4 (4 runs).
"""

from ul_jax.reproduce import Run

_CFG = "configs/cpu/cifar10.py"
FAR = ("digits_far_ood",)                      # sklearn digits: an offline stand-in for SVHN
NEAR = ("cifar10_split_near_ood", "digits_far_ood")


def _run(name, variant, data, claims, ood=FAR):
  return Run(name=name, config=f"{_CFG}:{variant},{data}", claims=claims, setting=data,
             variant=variant, ood=ood)


RUNS = (
    # claim 1 (Fig. 19): plain UL, learnable linear head; expected to stop with NonFiniteError
    Run(name="c1_ul", config=f"{_CFG}:ul,full", claims=("claim1",), setting="full", variant="ul",
        ood=(), expect_nonfinite=True),
    # its control: UL with the fixed-ETF PAL head at the same constant lr 0.1 and logging —
    # the paper's remedy; expected to stay finite (isolates the learnable head as the cause)
    Run(name="c1_ul_pal_const", config=f"{_CFG}:ul_pal,full", claims=("claim1",),
        setting="full", variant="ul_pal", ood=(),
        overrides={"optimizer.schedule": "constant", "log_every": 10}),
    # claim 2 (Fig. 2): CE vs UL+PAL vs UL+FNPAL with / without RLR, balanced CIFAR-10
    *(_run(f"c2_{v}", v, "full", ("claim2",)) for v in ("ce", "ul_pal", "ul_fnpal",
                                                         "ul_fnpal_rlr")),
    # claims 3, 4 (+ far-OOD of 5): long-tailed CIFAR-10, with / without EFR
    *(_run(f"c3_{d}_{v}", v, d, ("claim3", "claim4", "claim5"))
      for d in ("exp100", "exp10") for v in ("ce", "ce_efr", "ul_pal", "ul_pal_efr")),
    # claim 5 (Table 3 / Fig. 3): near-OOD (CIFAR-10 classes 6-9) and far-OOD, with / without EFR
    *(_run(f"c5_split_{v}", v, "split", ("claim4", "claim5"), NEAR)
      for v in ("ce", "ce_efr", "ul_pal", "ul_pal_efr")),
)

STEP_RUNS = tuple(_run(f"c3_step100_{v}", v, "step100", ("claim3", "claim4", "claim5"))
                  for v in ("ce", "ce_efr", "ul_pal", "ul_pal_efr"))

# ``--suite cpu_long`` (claim 2, optional): CE and UL+PAL for 4× the steps (4,800 ≈ 12 epochs,
# ≈ 7 min each) — does the UL+PAL − CE gap of the 1,200-step runs shrink with training?
LONG_STEPS = 4800
LONG_RUNS = tuple(
    Run(name=f"c2_long_{v}", config=f"{_CFG}:{v},full", claims=("claim2",), setting="full_long",
        variant=v, ood=(), overrides={"num_train_steps": LONG_STEPS, "eval_every": 400})
    for v in ("ce", "ul_pal"))

# The tables of ``--suite cpu`` / ``cpu_step`` / ``cpu_long`` all cover these (rows show "—"
# until their suite has run).
REPORT_RUNS = RUNS + STEP_RUNS + LONG_RUNS
