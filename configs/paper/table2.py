"""Tables 2, 4 and 5, Figs. 10 and 11: imbalanced CIFAR-10 (ResNet-18) / CIFAR-100 (ResNet-34),
200 epochs, App. C.2 optimization, with and without explicit feature regularization (EFR).

Argument ``<variant>,<imbalance>[,lam=λ][,reading=batch_sum|per_example|dataset_sum]``:

* variant: ``ce`` (vanilla CE), ``ce_efr`` (CE + λΣ‖h_i‖², default λ = 1e-5), ``ul_pal`` (vanilla
  UL, PAL head), ``ul_pal_efr`` (UL-PAL + EFR, default λ = 1e-6);
* imbalance: ``exp<ρ>`` (long-tailed, exponential profile) or ``step<ρ>`` (step profile) on
  CIFAR-10, prefixed ``c100_`` for CIFAR-100; ρ ∈ {100, 50, 20, 10}, and ``exp1`` is the original
  balanced set (Table 2's ρ = 1 column);
* ``lam=``: the λ grid of the tables, as printed — CE: 5e-6, 1e-5, 5e-5 (Tables 2, 4, 5); UL:
  1e-7, 5e-7, 1e-6, 5e-6 (Table 2);
* ``reading=``: how λ is read (``objective.efr_convention``), default ``dataset_sum`` — eq. 11's
  ``(λ/2) Σ_n ‖h_n‖²`` over the n training images (n = 12,406 for CIFAR-10-LT ρ = 100), converted
  at setup to the batch-sum weight ``λ_b = λ·n/(2B)``. The evidence for that default
  (``docs/REPRODUCTION.md``, second pass): read as a batch sum (``reading=batch_sum``) the paper's
  λ never engages (Theorem 6's ‖h*‖ ≈ 2,170 for UL λ = 1e-6 while the features end at
  ‖h‖ ≈ 230: no effect); read as eq. 11's data-set sum the same λ gives ‖h*‖ ≈ 22 on CIFAR-10
  (≈ 90 on CIFAR-10-LT ρ = 100), next to the ‖h*‖ = 17 our validation selected.

    python -m launch.train --config configs/paper/table2.py:ce_efr,exp100 --workdir runs/t2
    python -m launch.train --config configs/paper/table2.py:ce_efr,c100_step10,lam=5e-5 ...
    python -m launch.train --config configs/paper/table2.py:ul_pal_efr,exp100,reading=batch_sum ...

ECE (Tables 4/5's reliability diagrams, Figs. 10/11) comes from ``python -m launch.evaluate``.
"""

from configs import cifar10_lt, cifar100_lt
from configs.paper import choose, lam_token, parse_lambda, parse_reading, split_arg

VARIANTS = ("ce", "ce_efr", "ul_pal", "ul_pal_efr")
RATIOS = (100, 50, 20, 10)
CE_LAMBDAS = (5e-6, 1e-5, 5e-5)
UL_LAMBDAS = (1e-7, 5e-7, 1e-6, 5e-6)
IMBALANCES = tuple(f"{p}{k}{r}" for p in ("", "c100_") for k in ("exp", "step") for r in RATIOS) + (
    "exp1",
    "c100_exp1",
)


def _grid():
    out = []
    for imb in IMBALANCES:
        out += [f"ce,{imb}", f"ul_pal,{imb}"]
        out += [f"ce_efr,{imb},{lam_token(x)}" for x in CE_LAMBDAS]
        out += [f"ul_pal_efr,{imb},{lam_token(x)}" for x in UL_LAMBDAS]
    return tuple(out)


ARGS = _grid()


def parse_imbalance(text: str) -> tuple[str, str, float | None]:
    """``"c100_step10"`` → ``("cifar100", "step", 10.0)``; ``"exp1"`` → ``("cifar10", "exp", None)``."""
    choose(text, IMBALANCES, "table2 imbalance")
    dataset = "cifar100" if text.startswith("c100_") else "cifar10"
    rest = text.removeprefix("c100_")
    kind = "exp" if rest.startswith("exp") else "step"
    ratio = float(rest.removeprefix(kind))
    return dataset, kind, (None if ratio == 1 else ratio)


def get_config(arg=None):
    pos, kw = split_arg(arg, "ul_pal,exp100")
    if len(pos) != 2:
        raise ValueError(
            f"table2 config argument is '<variant>,<imbalance>[,lam=λ][,reading=…]'; got {arg!r}"
        )
    variant = choose(pos[0], VARIANTS, "table2 variant")
    dataset, kind, ratio = parse_imbalance(pos[1])
    lam = parse_lambda(kw, variant)
    reading = parse_reading(kw)
    c = (cifar10_lt if dataset == "cifar10" else cifar100_lt).get_config(variant)
    c.data.imbalance_ratio = ratio
    c.data.imbalance_kind = kind
    if lam is not None:
        c.objective.efr_weight = lam
    c.objective.efr_convention = reading
    c.experiment = f"table2:{arg or 'ul_pal,exp100'}"
    return c
