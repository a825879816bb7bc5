"""``python -m launch.reproduce --suite paper``: the paper's settings (accelerators; needs CIFAR-100
and SVHN through tfds). Same claims and table layout as ``configs/cpu/suite.py``; SVHN
(``svhn_cropped``) is the paper's OOD set. ``--seeds`` as wanted."""

from ul_jax.reproduce import Run

RUNS = (
    Run(name="fig19_ul", config="configs/paper/fig19.py:ul", claims=("claim1",), setting="c10",
        variant="ul", expect_nonfinite=True),
    *(Run(name=f"fig2_{d}_{v}", config=f"configs/paper/fig2.py:{d},{v}", claims=("claim2",),
          setting=d, variant=v)
      for d in ("cifar10", "cifar100", "imagenet100")
      for v in ("ce", "ul_pal", "ul_fnpal", "ul_fnpal_rlr")),
    *(Run(name=f"t2_{imb}_{v}", config=f"configs/paper/table2.py:{v},{imb}",
          claims=("claim3", "claim4"), setting=imb, variant=v)
      for imb in ("exp100", "exp10", "step100", "c100_exp100", "c100_exp10")
      for v in ("ce", "ce_efr", "ul_pal", "ul_pal_efr")),
    *(Run(name=f"t3_{d}_{v}", config=f"configs/paper/table3.py:{v},{d}",
          claims=("claim4", "claim5"), setting=d, variant=v, ood=("svhn_cropped",))
      for d in ("cifar10", "cifar100") for v in ("ce", "ce_efr", "ul_pal", "ul_pal_efr")),
)
