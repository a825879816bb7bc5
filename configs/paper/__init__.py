"""The paper's experiment settings (Sec. 4, App. C.2–C.4), one module per experiment family.

Each module is an ``ml_collections`` config file ``get_config(arg)`` built on the top-level dataset
configs (``configs/cifar10.py`` ...; no field is duplicated here) and lists every argument of its
grid in ``ARGS`` (the test ``tests/test_paper_reproduce.py`` validates and builds all of them). The runs
of ``python -m launch.reproduce --suite paper`` are listed, as data, in ``ul_jax/paper/suites.py``
(``PAPER_RUNS``):

==============  ================================================================================
module          what (arguments ``a,b[,lam=λ][,reading=…]``)
==============  ================================================================================
``fig2``        Fig. 2, Figs. 12–14 accuracy curves: ``<dataset>,<variant>`` with dataset
                cifar10 (ResNet-18, 200 ep) | cifar100 (ResNet-34, 200 ep) | imagenet100
                (ResNet-50, 100 ep) and variant ce | ul_pal | ul_fnpal | ul_fnpal_rlr | ce_efr |
                ul_pal_efr, optional ``lam=λ``, ``reading=…``
``fig19``       Fig. 19: plain UL with a learnable linear head on CIFAR-10 / ResNet-18, wd 5e-4
``table2``      Tables 2, 4, 5 and Figs. 10, 11 (imbalanced CIFAR): ``<variant>,<imbalance>``
                with variant ce | ce_efr | ul_pal | ul_pal_efr, imbalance ``[c100_](exp|step)ρ``
                (ρ ∈ 100, 50, 20, 10; ``exp1`` = the balanced set), optional ``lam=λ``,
                ``reading=…``
``table3``      Table 3, Table 6, Fig. 3 (OOD, SVHN is the paper's OOD set): ``<variant>,<dataset>``
                with dataset cifar10 (ResNet-18) | cifar100 (ResNet-34), optional ``lam=λ``,
                ``reading=…``
==============  ================================================================================

All of them keep App. C.2's optimization: SGD momentum 0.9, lr 0.1 with cosine annealing to 0,
weight decay 5e-4, batch 256.

The EFR λ is taken exactly as the paper prints it (``objective.efr_weight``, default or
``lam=λ``), together with how it is read (``objective.efr_convention``, argument
``reading=batch_sum|per_example|dataset_sum``, every module). The default is ``dataset_sum``
(reading C), eq. 11's ``(λ/2) Σ_n ‖h_n‖²`` over the n training images next to a mean loss, which
training converts once to the batch-sum weight ``λ_b = λ·n/(2B)`` (n the images actually trained
on, B = 256; logged at setup). The evidence (``docs/REPRODUCTION.md``, "The paper's λ in each
normalization", second pass): read as a batch sum (``reading=batch_sum``, the first pass) the
paper's λ never engages — for UL+PAL with λ = 1e-6 Theorem 6's stationary norm is ‖h*‖ ≈ 2,170
while the features end at ‖h‖ ≈ 230, and EFR has no effect; read as eq. 11's data-set sum the
same λ gives ‖h*‖ ≈ 22 on CIFAR-10, next to the ‖h*‖ = 17 that the CPU validation sweep
selected. ``reading=per_example`` (a mean over the batch: ``λ_b = λ/B``) makes every paper λ
weaker still. Usage, e.g.

    python -m launch.train --config configs/paper/table2.py:ce_efr,exp100 --workdir runs/t2_ce_efr
    python -m launch.train --config configs/paper/table3.py:ul_pal_efr,cifar10,reading=batch_sum ...
"""

from __future__ import annotations


def split_arg(arg: str | None, default: str) -> tuple[list[str], dict[str, str]]:
    """``"a,b,lam=1e-5"`` → ``(["a", "b"], {"lam": "1e-5"})`` (``None``/empty: ``default``)."""
    text = arg.strip() if arg and arg.strip() else default
    pos: list[str] = []
    kw: dict[str, str] = {}
    for tok in (t.strip() for t in text.split(",")):
        if not tok:
            continue
        if "=" in tok:
            k, v = tok.split("=", 1)
            kw[k.strip()] = v.strip()
        else:
            pos.append(tok)
    return pos, kw


def choose(value: str, allowed, what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {tuple(allowed)}; got {value!r}")
    return value


# How the paper's λ is read (``objective.efr_convention``; ``ul_jax.objectives.EFR_CONVENTIONS``)
READINGS = ("batch_sum", "per_example", "dataset_sum")
DEFAULT_READING = "dataset_sum"  # reading C, eq. 11 (module docstring: the evidence)
KEYWORDS = ("lam", "reading")


def check_keywords(kw: dict[str, str]) -> None:
    unknown = set(kw) - set(KEYWORDS)
    if unknown:
        raise ValueError(
            f"unknown config argument(s) {sorted(unknown)}; only lam=λ and "
            f"reading={'|'.join(READINGS)} are accepted"
        )


def parse_reading(kw: dict[str, str]) -> str:
    """The ``reading=`` argument (how the paper's λ is read), default :data:`DEFAULT_READING`."""
    check_keywords(kw)
    return choose(kw.get("reading", DEFAULT_READING), READINGS, "reading")


def parse_lambda(kw: dict[str, str], variant: str) -> float | None:
    """The ``lam=`` override (only for the EFR variants), or ``None``."""
    check_keywords(kw)
    if "lam" not in kw:
        return None
    if not variant.endswith("_efr"):
        raise ValueError(f"lam= applies to the EFR variants only; got variant {variant!r}")
    lam = float(kw["lam"])
    if not lam > 0:
        raise ValueError(f"lam must be > 0; got {lam}")
    return lam


def lam_token(lam: float) -> str:
    return f"lam={lam:g}"
