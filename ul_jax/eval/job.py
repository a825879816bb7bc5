"""The evaluation job: :func:`evaluate_run` ``(workdir) → dict`` over a trained run's checkpoint.

What it does, in order:

1. Checks the inputs before any compute: the work directory, its ``config.json`` and
   ``checkpoints/<step>/`` must exist (``FileNotFoundError`` naming the path), every requested OOD
   set must be one of :data:`ul_jax.data.OOD_SETS` and must not overlap the run's own data
   (``ValueError`` listing the valid names / saying why).
2. Loads the run's data with :func:`ul_jax.train.load_train_data` — the training loop's own
   path, so the test images, their order and the per-channel normalization (mean/std of the run's
   *training* split, 0..255 units) are exactly those of the loop's eval — and every OOD set (a
   missing one fails here, before any compute); then restores the checkpoint with
   :func:`ul_jax.train.restore_checkpoint` (latest, or ``step``).
3. One pass over the in-distribution test set in padded, masked batches of ``batch_size``
   (default: the run's ``eval_batch_size``) with the fixed-memory accumulators of
   :mod:`ul_jax.metrics.streaming`: top-1/top-5, per-class accuracy, the 15 ECE/MCE bins, the
   neural-collapse statistics of the penultimate features and the three OOD scores of every test
   example; for long-tailed runs also many/medium/few (from the class counts of the run's own
   long-tailed train split) and the MiSLAS index ranges (C = 10, 100). A second pass counts NC4
   (nearest-class-center agreement needs the final class means). Memory is
   ``O(C + p² + batch)`` plus 3 floats per scored example (AUROC needs every score).
4. For each OOD set (:mod:`ul_jax.data.ood`): its images go through exactly the ID path (same
   forward, same normalization); images of another size are first resized to the run's input
   size with Pillow's bilinear filter (the loaders' own ``image_size`` resize) — recorded per set
   as ``native_size`` / ``resized``. Metrics: FPR95 / AUROC / AUPR for MSP, energy (T = 1) and
   feature norm, ID = positive (:func:`ul_jax.metrics.ood_metrics`).
5. Writes ``eval.json`` (``eval_step<k>.json`` when ``step`` was given), a reliability diagram
   and, per OOD set, the Fig. 3 histograms of the energy score and of the feature norm into the
   work directory (or ``out_dir``), and returns the same dict. ``result["conventions"]`` states
   every metric definition used (:data:`CONVENTIONS`).

Single process only (one device): ``jax.process_count() > 1`` is refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ul_jax import data as uldata
from ul_jax import metrics as ulm
from ul_jax.config import effective_efr_weight, get_field
from ul_jax.data.ood import check_ood_names, load_ood_images
from ul_jax.eval.format import run_label
from ul_jax.eval.io import EVAL_FORMAT_VERSION, eval_filename, to_jsonable
from ul_jax.io import checkpoint_steps, read_jsonl, write_json_atomic

__all__ = ["ENERGY_TEMPERATURE", "CONVENTIONS", "SCORE_NAMES", "evaluate_run"]

_log = logging.getLogger(__name__)

ENERGY_TEMPERATURE = 1.0
SCORE_NAMES = ulm.OOD_SCORE_NAMES  # ("msp", "energy", "feature_norm")

CONVENTIONS: dict[str, str] = {
    "units": "accuracies, ECE/MCE and OOD metrics are fractions in [0, 1] (the paper prints "
    "them x 100); null means undefined (NaN), e.g. an empty many/medium/few group",
    "model": "eval mode (BatchNorm running statistics) of the checkpoint run.step; inputs are "
    "uint8 images normalized per channel with the mean/std (0..255 units) of the run's "
    "training split, exactly as the training loop's eval",
    "test_set": "the whole in-distribution test split of the run's dataset (the loop's eval "
    "set), streamed in padded batches; padding rows are masked out",
    "accuracy": "top-k: the label is among the k largest logits, ties broken toward the lower "
    "class index (argmax = first maximum); per_class_accuracy = top-1 accuracy of "
    "each test class; mean_per_class_accuracy = unweighted mean over classes",
    "shot_groups": "long-tailed runs only, OLTR convention by training-class counts: many "
    "n_train > 100, medium 20 <= n_train <= 100, few n_train < 20; each group is "
    "the unweighted mean of its classes' per-class accuracies",
    "index_groups": "long-tailed runs with C = 10 or 100 only, MiSLAS CIFAR-LT class-index "
    "ranges [start, stop): C=10 many [0,3) medium [3,7) few [7,10); C=100 "
    "[0,36) [36,71) [71,100) (class index = frequency rank on CIFAR-LT)",
    "calibration": "eq. 103 / MiSLAS: confidence = max softmax probability, prediction = its "
    "argmax; 15 equal-width bins (lo, hi] over [0, 1]; ECE = sum_b |B_b|/n "
    "|acc(B_b) - conf(B_b)|, MCE = max over non-empty bins",
    "neural_collapse": "Papyan et al. 2020 on the test-set penultimate features h (the input "
    "of the classifier head) with the run's classifier W (p, C): the linear "
    "kernel, or the fixed PAL/FNPAL prototypes. mu_G = unweighted mean of "
    "the class means, M = centered class means, Sigma_W = within-class "
    "covariance (1/n); nc1 = tr(Sigma_W Sigma_B^+)/C; equinorm = std/mean of "
    "column norms (ddof=1); equiangular = mean_{c!=c'} |cos + 1/(C-1)|; "
    "etf_distance = ||G/||G||_F - (I - 11^T/C)/sqrt(C-1)||_F of the Gram "
    "matrix (Zhu et al. 2021; *_prototypes: of W, uncentered); self_duality "
    "= ||W/||W||_F - M/||M||_F||_F^2; ncc_agreement (NC4) = fraction whose "
    "nearest class mean equals the model's argmax logit; Fig. 19 "
    "diagnostics: mean_feature_norm, max/min_prototype_norm, "
    "prototype_norm_ratio, min_prototype_angle_deg",
    "ood_scores": "larger = more in-distribution. msp = max_j softmax(z)_j (Hendrycks & Gimpel "
    "2017); energy = T logsumexp(z/T) with T = 1, the negative free energy (Liu et "
    "al. 2020); feature_norm = ||h||_2 of the penultimate feature (Sec. 4.2)",
    "ood_metrics": "in-distribution test examples are the positive class (energy_ood "
    "convention): fpr95 = false-positive rate of the OOD set at 95% TPR of the ID "
    "set, as energy_ood's fpr_and_fdr_at_recall (the threshold whose TPR is "
    "closest to 0.95); auroc = sklearn roc_auc_score; aupr = average precision "
    "with ID positive (AUPR-In). The whole ID test set against the whole OOD set "
    "(no subsampling)",
    "ood_preprocessing": "OOD images take the ID path (uint8 -> normalization with the run's "
    "training mean/std -> the same forward); images of another size are "
    "first resized to the run's input size with Pillow bilinear (see each "
    "set's native_size / resized)",
}


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
def _check_workdir(workdir: Path, step: int | None) -> None:
    if not workdir.is_dir():
        raise FileNotFoundError(f"work directory {workdir} does not exist")
    if not (workdir / "config.json").is_file():
        raise FileNotFoundError(
            f"no config.json in {workdir}: not a training work directory "
            "(python -m launch.train writes one)"
        )
    steps = checkpoint_steps(workdir)
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {workdir / 'checkpoints'}")
    if step is not None and int(step) not in steps:
        raise FileNotFoundError(
            f"no checkpoint for step {step} in {workdir / 'checkpoints'}; available steps: {steps}"
        )


def _check_inputs(
    workdir: Path, step: int | None, ood: tuple[str, ...], batch_size: int | None
) -> tuple[ml_collections.ConfigDict, tuple[str, ...]]:
    """Every input check, before any data is loaded: returns the run's validated config and the
    de-duplicated OOD names."""
    check_ood_names(ood)  # names first: no compute for a typo
    _check_workdir(workdir, step)
    stored = json.loads((workdir / "config.json").read_text())
    ood = check_ood_names(ood, stored.get("data", {}).get("name"))
    if jax.process_count() > 1:
        raise ValueError(
            f"evaluate_run runs in a single process; got jax.process_count()={jax.process_count()}"
        )
    if batch_size is not None and (
        isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer; got batch_size={batch_size!r}")
    config = ml_collections.ConfigDict(stored)
    from ul_jax.train import validate_config  # the training stack only when a job runs

    validate_config(config, device_count=1)
    return config, ood


# --------------------------------------------------------------------------------------------
# the jitted passes
# --------------------------------------------------------------------------------------------
def _eval_layout(batch_size: int) -> uldata.BatchLayout:
    # One process, one device: the whole (padded) batch goes to the default device.
    return uldata.BatchLayout(int(batch_size), 1, 0, 1)


def _device_batch(b: Mapping[str, np.ndarray], device, labels: bool = True) -> dict[str, jax.Array]:
    keys = ("image", "label", "mask") if labels else ("image", "mask")
    return jax.device_put({k: b[k] for k in keys}, device)


def _make_passes(model, mean, std):
    def forward(variables, images):
        x = uldata.normalize(images, mean, std)
        logits, features = model.apply(variables, x, train=False)
        return logits.astype(jnp.float32), features.astype(jnp.float32)

    @jax.jit
    def id_pass(acc, variables, batch):
        cls, nc, buf = acc
        logits, h = forward(variables, batch["image"])
        y, m = batch["label"].astype(jnp.int32), batch["mask"]
        return (
            ulm.classification_update(cls, logits, y, m),
            ulm.collapse_update(nc, h, y, m),
            ulm.ood_score_update(buf, logits, h, m, ENERGY_TEMPERATURE),
        )

    @jax.jit
    def ncc_pass(state, variables, batch, class_means):
        logits, h = forward(variables, batch["image"])
        return ulm.ncc_update(state, h, logits, class_means, batch["mask"])

    @jax.jit
    def ood_pass(buf, variables, batch):
        logits, h = forward(variables, batch["image"])
        return ulm.ood_score_update(buf, logits, h, batch["mask"], ENERGY_TEMPERATURE)

    return id_pass, ncc_pass, ood_pass


@dataclasses.dataclass
class _Evaluator:
    """A restored checkpoint on one device with its compiled passes."""

    step: int  # the checkpoint's training step
    w: np.ndarray  # (p, C) classifier weights
    device: Any
    variables: Any
    layout: uldata.BatchLayout
    id_pass: Callable
    ncc_pass: Callable
    ood_pass: Callable

    @property
    def feature_dim(self) -> int:
        return int(self.w.shape[0])


def _restore(workdir: Path, config, step: int | None, data, batch_size: int) -> _Evaluator:
    from ul_jax.train import classifier_weights, restore_checkpoint

    model, state, _ = restore_checkpoint(workdir, config=config, step=step)
    ckpt_step = int(jax.device_get(state.step))
    if step is not None and ckpt_step != int(step):
        raise RuntimeError(
            f"checkpoint {workdir / 'checkpoints' / str(step)} holds step {ckpt_step}"
        )
    w = np.asarray(jax.device_get(classifier_weights(state)), np.float32)  # (p, C)
    # one device, one sharding for every input and output: the passes compile once
    device = jax.devices()[0]
    variables = jax.device_put(state.variables(), device)
    passes = _make_passes(model, data.mean, data.std)
    return _Evaluator(ckpt_step, w, device, variables, _eval_layout(batch_size), *passes)


def _in_distribution(ev: _Evaluator, data) -> tuple[Any, dict, dict[str, np.ndarray]]:
    """Pass 1 (accuracy, calibration bins, NC statistics, ID OOD scores) and pass 2 (NC4 against
    the final class means): ``(classification state, neural collapse, ID scores)``."""
    c, n_test = data.num_classes, data.num_eval
    acc = jax.device_put(
        (
            ulm.classification_init(c),
            ulm.collapse_init(c, ev.feature_dim),
            ulm.score_buffer_init(n_test),
        ),
        ev.device,
    )
    for b in data.eval_batches(ev.layout):
        acc = ev.id_pass(acc, ev.variables, _device_batch(b, ev.device))
    cls_state, nc_state, id_buf = acc
    means = ulm.collapse_class_means(nc_state)
    ncc_state = jax.device_put(ulm.ncc_init(), ev.device)
    for b in data.eval_batches(ev.layout):
        ncc_state = ev.ncc_pass(ncc_state, ev.variables, _device_batch(b, ev.device), means)
    nc = ulm.collapse_finalize(nc_state, ev.w, ncc_state)
    return cls_state, nc, ulm.score_buffer_finalize(id_buf)


def _ood_scores(ev: _Evaluator, images: np.ndarray) -> dict[str, np.ndarray]:
    buf = jax.device_put(ulm.score_buffer_init(len(images)), ev.device)
    dummy = np.zeros(len(images), np.int32)
    for b in uldata.eval_batches(images, dummy, ev.layout):
        buf = ev.ood_pass(buf, ev.variables, _device_batch(b, ev.device, labels=False))
    return ulm.score_buffer_finalize(buf)


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------
def _train_class_counts(config, data) -> np.ndarray | None:
    """Training images per class of a long-tailed run (the split the loop trained on, after any
    validation hold-out: :attr:`ul_jax.train.TrainData.class_counts`), else ``None``."""
    if config.data.imbalance_ratio is None or data.class_counts is None:
        return None
    counts = np.asarray(data.class_counts)
    if int(counts.sum()) != int(data.num_train):
        raise RuntimeError(
            f"the long-tailed train split has {int(counts.sum())} images but the "
            f"training data of the run has {data.num_train}"
        )
    return counts


def _classification(cls_state, config, data) -> tuple[dict, np.ndarray | None]:
    """The finalized classification/calibration metrics and the long-tailed train counts."""
    train_counts = _train_class_counts(config, data)
    ranges = (
        "mislas"
        if train_counts is not None and data.num_classes in ulm.MISLAS_CLASS_RANGES
        else None
    )
    cls = ulm.classification_finalize(
        cls_state, train_class_counts=train_counts, index_ranges=ranges
    )
    if cls["num_examples"] != data.num_eval:
        raise RuntimeError(
            f"evaluated {cls['num_examples']} test examples, expected {data.num_eval}"
        )
    return cls, train_counts


def _stats(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, np.float64)
    return {
        "mean": float(np.mean(x)),
        "std": float(np.std(x)),
        "min": float(np.min(x)),
        "median": float(np.median(x)),
        "max": float(np.max(x)),
    }


def _run_info(
    config, workdir: Path, step: int, num_classes: int, feature_dim: int, num_train: int
) -> dict:
    c = config
    variant = c.get("variant", None)
    return {
        "workdir": str(workdir),
        "step": int(step),
        "variant": variant,
        "dataset": c.data.name,
        "imbalance_ratio": c.data.imbalance_ratio,
        "imbalance_kind": c.data.imbalance_kind if c.data.imbalance_ratio is not None else None,
        "arch": c.model.arch,
        "width_multiplier": c.model.width_multiplier,
        "head": c.head.kind,
        "head_bias": bool(c.head.bias),
        "loss": c.objective.loss,
        # the EFR λ as the config states it, how it is read, and the batch-sum λ_b trained with
        "efr_weight": float(c.objective.efr_weight),
        "efr_convention": str(get_field(c, "objective.efr_convention")),
        "efr_lambda_b": effective_efr_weight(c, num_train),
        "num_train": int(num_train),
        "rlr": bool(c.objective.rlr),
        "weight_decay": float(c.optimizer.weight_decay),
        "seed": int(c.seed),
        "num_classes": int(num_classes),
        "feature_dim": int(feature_dim),
    }


def _loop_eval(workdir: Path, step: int) -> dict | None:
    rows = [
        r
        for r in read_jsonl(workdir / "metrics.jsonl")
        if r.get("step") == step and "eval/accuracy" in r
    ]
    if not rows:
        return None
    r = rows[-1]
    return {"step": step, "accuracy": r["eval/accuracy"], "count": r.get("eval/count")}


# --------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Plots:
    """Where the PNGs go (``None``: no plots) and the file names written so far."""

    out_dir: Path | None
    suffix: str
    dataset: str
    title: str  # "<run label>, step <k>"
    files: dict[str, str] = dataclasses.field(default_factory=dict)

    def reliability(self, bins) -> None:
        if self.out_dir is None:
            return
        name = f"reliability{self.suffix}.png"
        ulm.plot_reliability_diagram(
            bins, self.out_dir / name, title=f"{self.dataset} test, {self.title}"
        )
        self.files["reliability_diagram"] = name

    def ood_histograms(self, name: str, id_scores, scores) -> None:
        if self.out_dir is None:
            return
        fname = f"ood_hist_{name}{self.suffix}.png"
        ulm.plot_ood_histograms(
            id_scores,
            scores,
            self.out_dir / fname,
            names=("energy", "feature_norm"),
            id_label=f"ID: {self.dataset} test",
            ood_label=f"OOD: {name}",
            title=f"{self.title}: {self.dataset} vs {name}",
        )
        self.files[f"ood_hist_{name}"] = fname


def _score_ood_sets(
    ev: _Evaluator,
    ood_images: Mapping[str, tuple[np.ndarray, dict]],
    id_scores: Mapping[str, np.ndarray],
    plots: _Plots,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (images, info) in ood_images.items():
        scores = _ood_scores(ev, images)
        info["metrics"] = {s: ulm.ood_metrics(id_scores[s], scores[s]) for s in SCORE_NAMES}
        info["score_stats"] = {
            "id": {s: _stats(id_scores[s]) for s in SCORE_NAMES},
            "ood": {s: _stats(scores[s]) for s in SCORE_NAMES},
        }
        plots.ood_histograms(name, id_scores, scores)
        out[name] = info
    return out


def _result(
    run_info: dict,
    data,
    bs: int,
    cls: dict,
    train_counts,
    nc: dict,
    ood_out: dict,
    loop_eval: dict | None,
    files: dict,
) -> dict[str, Any]:
    bins = cls["calibration_bins"]
    classification = {k: v for k, v in cls.items() if k not in ("calibration_bins", "ece", "mce")}
    if train_counts is not None:
        classification["train_class_counts"] = train_counts
    return {
        "format_version": EVAL_FORMAT_VERSION,
        "run": run_info,
        "test_set": {
            "name": run_info["dataset"],
            "split": "test",
            "num_examples": data.num_eval,
            "image_shape": list(data.image_shape),
            "batch_size": bs,
            "normalization_mean": list(data.mean),
            "normalization_std": list(data.std),
        },
        "classification": classification,
        "calibration": {
            "ece": cls["ece"],
            "mce": cls["mce"],
            "num_bins": bins.num_bins,
            "bin_edges": bins.edges,
            "bin_counts": bins.counts,
            "bin_accuracy": bins.accuracy,
            "bin_confidence": bins.confidence,
        },
        "neural_collapse": nc,
        "ood": ood_out,
        "train_loop_eval": loop_eval,
        "files": files,
        "conventions": CONVENTIONS,
    }


def evaluate_run(
    workdir: str | os.PathLike,
    *,
    step: int | None = None,
    ood: Sequence[str] = (),
    batch_size: int | None = None,
    out_dir: str | os.PathLike | None = None,
    ood_source: str | None = None,
    ood_data_dir: str | os.PathLike | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Evaluates a run's checkpoint (see the module docstring) and writes ``eval.json``.

    Args:
      workdir: a work directory of ``python -m launch.train``.
      step: checkpoint step (default: the latest); the output is then ``eval_step<step>.json``.
      ood: names from :data:`ul_jax.data.OOD_SETS`.
      batch_size: eval batch size (default: the run's ``eval_batch_size``).
      out_dir: where the JSON and PNGs go (default: ``workdir``).
      ood_source, ood_data_dir: override the loader (for the OOD sets that can use it) and the
        data directory of the OOD sets.
      plots: write the PNGs.

    Returns:
      The dict written to the JSON file: ``format_version``, ``run``, ``test_set``,
      ``classification``, ``calibration``, ``neural_collapse``, ``ood``, ``train_loop_eval``,
      ``files``, ``conventions``, ``seconds``.

    Raises:
      FileNotFoundError: missing work directory, ``config.json`` or checkpoint (naming the path);
        an OOD set whose data is not available.
      ValueError: an unknown or overlapping OOD set, a bad batch size, several processes.
    """
    t0 = time.perf_counter()
    workdir = Path(workdir).expanduser().absolute()
    config, ood = _check_inputs(workdir, step, tuple(ood), batch_size)
    bs = int(batch_size or config.eval_batch_size)
    from ul_jax.train import load_train_data

    data = load_train_data(config)  # the loop's test set and normalization
    # every OOD set is loaded before any compute: a missing one fails fast
    ood_images = {
        name: load_ood_images(
            name, data.image_shape, config=config, source=ood_source, data_dir=ood_data_dir
        )
        for name in ood
    }
    ev = _restore(workdir, config, step, data, bs)

    cls_state, nc, id_scores = _in_distribution(ev, data)
    cls, train_counts = _classification(cls_state, config, data)
    run_info = _run_info(config, workdir, ev.step, data.num_classes, ev.feature_dim, data.num_train)
    out_dir = Path(out_dir).expanduser().absolute() if out_dir is not None else workdir
    figs = _Plots(
        out_dir if plots else None,
        "" if step is None else f"_step{int(step)}",
        config.data.name,
        f"{run_label({'run': run_info})}, step {ev.step}",
    )
    figs.reliability(cls["calibration_bins"])
    ood_out = _score_ood_sets(ev, ood_images, id_scores, figs)

    loop_eval = _loop_eval(workdir, ev.step)
    if loop_eval is not None and abs(loop_eval["accuracy"] - cls["top1"]) > 1e-6:
        _log.warning(
            "top-1 %.6f differs from the training loop's eval/accuracy %.6f at step %d",
            cls["top1"],
            loop_eval["accuracy"],
            ev.step,
        )

    result = _result(run_info, data, bs, cls, train_counts, nc, ood_out, loop_eval, figs.files)
    fname = eval_filename(step)
    figs.files["json"] = fname
    result["seconds"] = time.perf_counter() - t0
    result = to_jsonable(result)
    write_json_atomic(out_dir / fname, result)
    result["path"] = str(out_dir / fname)
    return result
