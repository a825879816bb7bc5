"""The evaluation job: :func:`evaluate_run` ``(workdir) → dict`` over a trained run's checkpoint.

What it does, in order:

1. Checks the inputs before any compute: the work directory, its ``config.json`` and
   ``checkpoints/<step>/`` must exist (``FileNotFoundError`` naming the path), every requested OOD
   set must be one of :data:`OOD_SETS` and must not overlap the run's own data (``ValueError``
   listing the valid names / saying why).
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
4. For each OOD set: its images go through exactly the ID path (same forward, same
   normalization); images of another size are first resized to the run's input size with
   Pillow's bilinear filter (the loaders' own ``image_size`` resize) — recorded per set as
   ``native_size`` / ``resized``. Metrics: FPR95 / AUROC / AUPR for MSP, energy (T = 1) and
   feature norm, ID = positive (:func:`ul_jax.metrics.ood_metrics`).
5. Writes ``eval.json`` (``eval_step<k>.json`` when ``step`` was given), a reliability diagram
   and, per OOD set, the Fig. 3 histograms of the energy score and of the feature norm into the
   work directory (or ``out_dir``), and returns the same dict. ``result["conventions"]`` states
   every metric definition used (:data:`CONVENTIONS`).

OOD sets (:data:`OOD_SETS`) carry honest names: ``digits_far_ood`` is sklearn's handwritten digits,
an offline *stand-in* for SVHN, not SVHN; only ``svhn_cropped`` (tfds) is SVHN. A set that shares
images or classes with the run's data (``digits_far_ood`` for a digits run, ``cifar10`` for a
CIFAR-10 run, ...) is refused. ``uniform_noise`` is synthetic (no real data), a sanity check.
For the digits demo the offline far-OOD set is ``cifar10`` (the CIFAR-10 test split resized to
the run's size); there is no near-OOD set for digits (the training stack has no digits
class-split dataset), whereas CIFAR runs trained on ``cifar10_split_id`` have
``cifar10_split_near_ood``.

Single process only (one device): ``jax.process_count() > 1`` is refused.

The command-line front ends are ``python -m launch.evaluate`` (:func:`format_eval` prints the
table) and ``python -m launch.report`` (:func:`format_report`, a Table 2/3-style comparison of
several runs' ``eval.json``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from ul_jax import data as uldata
from ul_jax import metrics as ulm
from ul_jax.train import (
    classifier_weights,
    load_train_data,
    read_jsonl,
    restore_checkpoint,
    validate_config,
)

__all__ = [
    "EVAL_FORMAT_VERSION",
    "ENERGY_TEMPERATURE",
    "CONVENTIONS",
    "OODSet",
    "OOD_SETS",
    "SCORE_NAMES",
    "evaluate_run",
    "eval_filename",
    "checkpoint_steps",
    "check_ood_names",
    "load_ood_images",
    "resize_images",
    "load_eval",
    "run_label",
    "format_eval",
    "format_report",
]

_log = logging.getLogger(__name__)

EVAL_FORMAT_VERSION = 1
ENERGY_TEMPERATURE = 1.0
SCORE_NAMES = ulm.OOD_SCORE_NAMES  # ("msp", "energy", "feature_norm")
_SCORE_SHORT = {"msp": "MSP", "energy": "energy", "feature_norm": "‖h‖"}
_UNIFORM_NOISE_SIZE = 2000
_UNIFORM_NOISE_SEED = 0

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
# OOD sets
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class OODSet:
    """An OOD test set: how to load it and with which runs it must not be used."""

    name: str
    description: str
    sources: tuple[str, ...]          # loaders allowed, in order of preference
    split: str
    follow_run_source: bool = False   # prefer the run's own data.source if it is allowed
    overlaps: tuple[str, ...] = ()    # run data.name values this set shares images/classes with
    overlap_reason: str = ""


OOD_SETS: dict[str, OODSet] = {s.name: s for s in (
    OODSet("svhn_cropped",
           "SVHN cropped digits, test split (tfds 'svhn_cropped', 26,032 images, 32x32): the "
           "paper's OOD set (Table 3, Table 6, Fig. 3)",
           ("tfds", "image_folder"), "test"),
    OODSet("digits_far_ood",
           "all 1,797 sklearn handwritten digits as RGB: an offline far-OOD stand-in for SVHN "
           "(digits, like SVHN; not SVHN)",
           ("digits",), "all", overlaps=("digits",),
           overlap_reason="it holds every sklearn digit, including this run's own train and "
                          "test images"),
    OODSet("cifar10",
           "CIFAR-10 test split (10,000 natural images, 32x32): far-OOD for runs not trained on "
           "CIFAR-10 (e.g. the digits demo)",
           ("image_folder", "tfds"), "test", follow_run_source=True,
           overlaps=("cifar10", "cifar10_split_id"),
           overlap_reason="it contains the classes this run was trained on"),
    OODSet("cifar10_split_near_ood",
           "CIFAR-10 test images of classes 6-9 (frog, horse, ship, truck): near-OOD for runs "
           "trained on cifar10_split_id (classes 0-5)",
           ("image_folder", "tfds"), "test", follow_run_source=True, overlaps=("cifar10",),
           overlap_reason="classes 6-9 are in-distribution for a CIFAR-10 run"),
    OODSet("cifar100",
           "CIFAR-100 test split (10,000 images, 32x32): near-OOD for CIFAR-10 runs",
           ("tfds", "image_folder"), "test", overlaps=("cifar100",),
           overlap_reason="it is this run's own dataset"),
    OODSet("uniform_noise",
           f"synthetic: {_UNIFORM_NOISE_SIZE:,} images of i.i.d. uniform pixels 0..255 "
           f"(numpy default_rng({_UNIFORM_NOISE_SEED})) at the run's input size; no real data, "
           "a sanity check",
           ("synthetic",), "test"),
)}


def check_ood_names(names: Iterable[str], dataset: str | None = None) -> tuple[str, ...]:
    """Validates OOD set names (and, given the run's ``data.name``, that none overlaps it).

    Returns the names, de-duplicated in order. Raises ``ValueError`` listing the valid names.
    """
    out: list[str] = []
    for n in names:
        if n not in OOD_SETS:
            raise ValueError(f"unknown OOD set {n!r}; valid OOD sets: {', '.join(OOD_SETS)}")
        spec = OOD_SETS[n]
        if dataset is not None and dataset in spec.overlaps:
            valid = [k for k, s in OOD_SETS.items() if dataset not in s.overlaps]
            raise ValueError(f"OOD set {n!r} cannot be used for a run trained on {dataset!r}: "
                             f"{spec.overlap_reason}. Usable here: {', '.join(valid)}")
        if n not in out:
            out.append(n)
    return tuple(out)


def resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(n, h, w, 3)`` uint8 → ``(n, H, W, 3)`` uint8 with Pillow's bilinear filter (the resize of
    the image-folder and digits loaders); returned unchanged if already ``size``."""
    h, w = int(size[0]), int(size[1])
    if images.shape[1:3] == (h, w):
        return images
    out = np.empty((images.shape[0], h, w, images.shape[3]), np.uint8)
    for i, im in enumerate(images):
        out[i] = np.asarray(Image.fromarray(im).resize((w, h), Image.Resampling.BILINEAR))
    return out


def _ood_source(spec: OODSet, config, source: str | None, data_dir) -> tuple[str, Any]:
    """The loader of ``spec``: ``source`` if the set can load from it, else the run's own
    ``data.source`` for the CIFAR-10 sets, else the set's first choice. ``data_dir`` defaults to
    the run's when the loader is the run's."""
    run_source = config.data.source if config is not None else None
    if source is not None and source in spec.sources:
        pass
    elif spec.follow_run_source and run_source in spec.sources:
        source = run_source
    else:
        source = spec.sources[0]
    if data_dir is None and config is not None and source == run_source:
        data_dir = config.data.data_dir
    return source, data_dir


def load_ood_images(name: str, image_shape: Sequence[int], *, config=None,
                    source: str | None = None, data_dir=None) -> tuple[np.ndarray, dict]:
    """Loads OOD set ``name`` as uint8 ``(n, H, W, 3)`` at the run's ``image_shape = (H, W, 3)``.

    Args:
      name: a key of :data:`OOD_SETS`.
      image_shape: the run's input shape; other sizes are resized (:func:`resize_images`).
      config: the run's config: picks the loader (``cifar10*`` follow the run's ``data.source``)
        and ``data_dir`` (when the loader is the run's).
      source, data_dir: override the loader (for sets that can use it; ``digits_far_ood`` and
        ``uniform_noise`` have one fixed loader) and its data directory.

    Returns:
      ``(images, info)`` with ``info`` = name, description, source, split, num_examples,
      native_size, resized, image_shape.
    """
    (name,) = check_ood_names([name])
    spec = OOD_SETS[name]
    h, w = int(image_shape[0]), int(image_shape[1])
    src, ddir = _ood_source(spec, config, source, data_dir)
    if src == "synthetic":
        rng = np.random.default_rng(_UNIFORM_NOISE_SEED)
        images = rng.integers(0, 256, size=(_UNIFORM_NOISE_SIZE, h, w, 3), dtype=np.uint8)
        native = [h, w]
    elif src == "digits":
        # generated from the 8x8 originals straight at the run's size (as the ID digits are)
        ds = uldata.load_dataset(name, spec.split, source="digits", image_size=h)
        native = [int(ds.images.shape[1]), int(ds.images.shape[2])]
        images = ds.images
    else:
        try:
            ds = uldata.load_dataset(name, spec.split, source=src, data_dir=ddir)
        except (OSError, ImportError, KeyError) as e:   # KeyError: tfds, an unprepared variant
            others = [x for x in spec.sources if x != src]
            hint = f"; try ood_source={others[0]!r}" if others else ""
            raise FileNotFoundError(f"OOD set {name!r} is not available with source={src!r} "
                                    f"(data_dir={ddir}): {type(e).__name__}: {e}{hint}") from e
        native = [int(ds.images.shape[1]), int(ds.images.shape[2])]
        images = ds.images
    images = resize_images(np.asarray(images), (h, w))
    info = {
        "name": name,
        "description": spec.description,
        "source": src,
        "split": spec.split,
        "num_examples": int(images.shape[0]),
        "native_size": native,
        "resized": native != [h, w],
        "image_shape": [h, w, 3],
    }
    return images, info


# --------------------------------------------------------------------------------------------
# the job
# --------------------------------------------------------------------------------------------
def checkpoint_steps(workdir: str | os.PathLike) -> list[int]:
    """Steps of the finished checkpoints in ``workdir/checkpoints`` (sorted; nothing is created)."""
    d = Path(workdir) / "checkpoints"
    if not d.is_dir():
        return []
    return sorted(int(p.name) for p in d.iterdir() if p.is_dir() and p.name.isdigit())


def eval_filename(step: int | None) -> str:
    """``eval.json`` for the latest checkpoint, ``eval_step<k>.json`` for a requested step."""
    return "eval.json" if step is None else f"eval_step{int(step)}.json"


def _check_workdir(workdir: Path, step: int | None) -> None:
    if not workdir.is_dir():
        raise FileNotFoundError(f"work directory {workdir} does not exist")
    if not (workdir / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {workdir}: not a training work directory "
                                "(python -m launch.train writes one)")
    steps = checkpoint_steps(workdir)
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {workdir / 'checkpoints'}")
    if step is not None and int(step) not in steps:
        raise FileNotFoundError(f"no checkpoint for step {step} in {workdir / 'checkpoints'}; "
                                f"available steps: {steps}")


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
        return (ulm.classification_update(cls, logits, y, m),
                ulm.collapse_update(nc, h, y, m),
                ulm.ood_score_update(buf, logits, h, m, ENERGY_TEMPERATURE))

    @jax.jit
    def ncc_pass(state, variables, batch, class_means):
        logits, h = forward(variables, batch["image"])
        return ulm.ncc_update(state, h, logits, class_means, batch["mask"])

    @jax.jit
    def ood_pass(buf, variables, batch):
        logits, h = forward(variables, batch["image"])
        return ulm.ood_score_update(buf, logits, h, batch["mask"], ENERGY_TEMPERATURE)

    return id_pass, ncc_pass, ood_pass


def _train_class_counts(config, num_train: int) -> np.ndarray | None:
    """Training images per class of a long-tailed run (the loop's train split), else ``None``."""
    d = config.data
    if d.imbalance_ratio is None or d.name == "imagenet100":
        return None
    train = uldata.load_dataset(d.name, "train", source=d.source, data_dir=d.data_dir,
                                image_size=d.image_size, seed=d.seed,
                                imbalance_ratio=d.imbalance_ratio, imbalance_kind=d.imbalance_kind)
    counts = train.class_counts()
    if int(counts.sum()) != int(num_train):
        raise RuntimeError(f"the long-tailed train split has {int(counts.sum())} images but the "
                           f"training data of the run has {num_train}")
    return counts


def _run_info(config, workdir: Path, step: int, num_classes: int, feature_dim: int) -> dict:
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
        "efr_weight": float(c.objective.efr_weight),
        "rlr": bool(c.objective.rlr),
        "weight_decay": float(c.optimizer.weight_decay),
        "seed": int(c.seed),
        "num_classes": int(num_classes),
        "feature_dim": int(feature_dim),
    }


def _loop_eval(workdir: Path, step: int) -> dict | None:
    rows = [r for r in read_jsonl(workdir / "metrics.jsonl")
            if r.get("step") == step and "eval/accuracy" in r]
    if not rows:
        return None
    r = rows[-1]
    return {"step": step, "accuracy": r["eval/accuracy"], "count": r.get("eval/count")}


def _stats(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, np.float64)
    return {"mean": float(np.mean(x)), "std": float(np.std(x)), "min": float(np.min(x)),
            "median": float(np.median(x)), "max": float(np.max(x))}


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


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
      ood: names from :data:`OOD_SETS`.
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
    ood = tuple(ood)
    check_ood_names(ood)                      # names first: no compute for a typo
    _check_workdir(workdir, step)
    stored = json.loads((workdir / "config.json").read_text())
    ood = check_ood_names(ood, stored.get("data", {}).get("name"))
    if jax.process_count() > 1:
        raise ValueError("evaluate_run runs in a single process; got "
                         f"jax.process_count()={jax.process_count()}")
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) != batch_size
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer; got batch_size={batch_size!r}")

    config = ml_collections.ConfigDict(stored)
    validate_config(config, device_count=1)
    bs = int(batch_size or config.eval_batch_size)
    layout = _eval_layout(bs)
    data = load_train_data(config)            # the loop's test set and normalization
    num_classes, n_test = data.num_classes, data.num_eval
    # every OOD set is loaded before any compute: a missing one fails fast
    ood_images = {name: load_ood_images(name, data.image_shape, config=config, source=ood_source,
                                        data_dir=ood_data_dir) for name in ood}

    model, state, _ = restore_checkpoint(workdir, config=config, step=step)
    ckpt_step = int(jax.device_get(state.step))
    if step is not None and ckpt_step != int(step):
        raise RuntimeError(f"checkpoint {workdir / 'checkpoints' / str(step)} holds step "
                           f"{ckpt_step}")
    w = np.asarray(jax.device_get(classifier_weights(state)), np.float32)   # (p, C)
    p = int(w.shape[0])
    # one device, one sharding for every input and output: the passes compile once
    device = jax.devices()[0]
    variables = jax.device_put(state.variables(), device)
    id_pass, ncc_pass, ood_pass = _make_passes(model, data.mean, data.std)

    # pass 1: accuracy, calibration bins, NC statistics, ID OOD scores
    acc = jax.device_put((ulm.classification_init(num_classes), ulm.collapse_init(num_classes, p),
                          ulm.score_buffer_init(n_test)), device)
    for b in data.eval_batches(layout):
        acc = id_pass(acc, variables, _device_batch(b, device))
    cls_state, nc_state, id_buf = acc
    # pass 2: NC4 against the final class means
    means = ulm.collapse_class_means(nc_state)
    ncc_state = jax.device_put(ulm.ncc_init(), device)
    for b in data.eval_batches(layout):
        ncc_state = ncc_pass(ncc_state, variables, _device_batch(b, device), means)

    train_counts = _train_class_counts(config, data.num_train)
    ranges = ("mislas" if train_counts is not None and num_classes in ulm.MISLAS_CLASS_RANGES
              else None)
    cls = ulm.classification_finalize(cls_state, train_class_counts=train_counts,
                                      index_ranges=ranges)
    if cls["num_examples"] != n_test:
        raise RuntimeError(f"evaluated {cls['num_examples']} test examples, expected {n_test}")
    nc = ulm.collapse_finalize(nc_state, w, ncc_state)
    id_scores = ulm.score_buffer_finalize(id_buf)

    out_dir = Path(out_dir).expanduser().absolute() if out_dir is not None else workdir
    suffix = "" if step is None else f"_step{int(step)}"
    files: dict[str, str] = {}
    bins = cls["calibration_bins"]
    dataset = config.data.name
    run_info = _run_info(config, workdir, ckpt_step, num_classes, p)
    label = run_label({"run": run_info})
    if plots:
        name = f"reliability{suffix}.png"
        ulm.plot_reliability_diagram(bins, out_dir / name,
                                     title=f"{dataset} test, {label}, step {ckpt_step}")
        files["reliability_diagram"] = name

    ood_out: dict[str, Any] = {}
    for name, (images, info) in ood_images.items():
        buf = jax.device_put(ulm.score_buffer_init(len(images)), device)
        dummy = np.zeros(len(images), np.int32)
        for b in uldata.eval_batches(images, dummy, layout):
            buf = ood_pass(buf, variables, _device_batch(b, device, labels=False))
        scores = ulm.score_buffer_finalize(buf)
        info["metrics"] = {s: ulm.ood_metrics(id_scores[s], scores[s]) for s in SCORE_NAMES}
        info["score_stats"] = {"id": {s: _stats(id_scores[s]) for s in SCORE_NAMES},
                               "ood": {s: _stats(scores[s]) for s in SCORE_NAMES}}
        if plots:
            fname = f"ood_hist_{name}{suffix}.png"
            ulm.plot_ood_histograms(id_scores, scores, out_dir / fname,
                                    names=("energy", "feature_norm"),
                                    id_label=f"ID: {dataset} test", ood_label=f"OOD: {name}",
                                    title=f"{label}, step {ckpt_step}: {dataset} vs {name}")
            files[f"ood_hist_{name}"] = fname
        ood_out[name] = info

    loop_eval = _loop_eval(workdir, ckpt_step)
    if loop_eval is not None and abs(loop_eval["accuracy"] - cls["top1"]) > 1e-6:
        _log.warning("top-1 %.6f differs from the training loop's eval/accuracy %.6f at step %d",
                     cls["top1"], loop_eval["accuracy"], ckpt_step)

    classification = {k: v for k, v in cls.items() if k not in ("calibration_bins", "ece", "mce")}
    if train_counts is not None:
        classification["train_class_counts"] = train_counts
    result = {
        "format_version": EVAL_FORMAT_VERSION,
        "run": run_info,
        "test_set": {"name": dataset, "split": "test", "num_examples": n_test,
                     "image_shape": list(data.image_shape), "batch_size": bs,
                     "normalization_mean": list(data.mean), "normalization_std": list(data.std)},
        "classification": classification,
        "calibration": {"ece": cls["ece"], "mce": cls["mce"], "num_bins": bins.num_bins,
                        "bin_edges": bins.edges, "bin_counts": bins.counts,
                        "bin_accuracy": bins.accuracy, "bin_confidence": bins.confidence},
        "neural_collapse": nc,
        "ood": ood_out,
        "train_loop_eval": loop_eval,
        "files": files,
        "conventions": CONVENTIONS,
    }
    fname = eval_filename(step)
    files["json"] = fname
    result["seconds"] = time.perf_counter() - t0
    result = _jsonable(result)
    _write_json(out_dir / fname, result)
    result["path"] = str(out_dir / fname)
    return result


# --------------------------------------------------------------------------------------------
# reading and printing
# --------------------------------------------------------------------------------------------
def load_eval(path: str | os.PathLike) -> dict:
    """Reads an eval JSON: a file, or a work directory's ``eval.json``."""
    p = Path(path).expanduser()
    if p.is_dir():
        f = p / "eval.json"
        if not f.is_file():
            others = sorted(x.name for x in p.glob("eval_step*.json"))
            hint = (f"; it has {', '.join(others)} (pass one of those files)" if others else
                    f"; run python -m launch.evaluate --workdir {p} first")
            raise FileNotFoundError(f"no eval.json in {p}{hint}")
        p = f
    elif not p.is_file():
        raise FileNotFoundError(f"{p} does not exist (expected a work directory or an eval JSON)")
    try:
        out = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{p} is not valid JSON: {e}") from e
    if not isinstance(out, dict) or "classification" not in out or "run" not in out:
        raise ValueError(f"{p} is not an eval JSON of ul_jax.evaluation (no run/classification)")
    out.setdefault("path", str(p))
    return out


def _g(v: float | None) -> str:
    return f"{v:g}"


def run_label(result: Mapping) -> str:
    """``variant`` (or ``loss-head``) plus EFR λ and RLR, e.g. ``"ul_pal_efr (λ=1e-06)"``."""
    r = result["run"]
    name = r.get("variant") or f"{r.get('loss')}-{r.get('head')}"
    extra = []
    if r.get("efr_weight"):
        extra.append(f"λ={_g(r['efr_weight'])}")
    if r.get("rlr") and "rlr" not in name:
        extra.append("RLR")
    return name + (f" ({', '.join(extra)})" if extra else "")


def _data_label(r: Mapping) -> str:
    s = r["dataset"]
    if r.get("imbalance_ratio") is not None:
        kind = "LT" if r.get("imbalance_kind") in (None, "exp") else r["imbalance_kind"]
        s += f"-{kind} ρ={_g(r['imbalance_ratio'])}"
    return s


def _pct(v) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{100 * v:.2f}"


def _f(v, fmt: str = ".4g") -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _groups(c: Mapping) -> tuple[Mapping | None, str]:
    if c.get("shot_groups"):
        return c["shot_groups"], "OLTR"
    if c.get("index_groups"):
        return c["index_groups"], "MiSLAS"
    return None, ""


def format_eval(result: Mapping) -> str:
    """A readable multi-line summary of one :func:`evaluate_run` result (percentages)."""
    r, c, cal, nc = result["run"], result["classification"], result["calibration"], \
        result["neural_collapse"]
    t = result["test_set"]
    lines = [
        f"run      {r['workdir']}",
        f"         {run_label(result)}: loss={r['loss']} head={r['head']} "
        f"efr={_g(r['efr_weight'])} rlr={r['rlr']} | {r['arch']} x{_g(r['width_multiplier'])}, "
        f"p={r['feature_dim']} | step {r['step']}",
        f"test set {_data_label(r)} {t['split']}: {t['num_examples']} images "
        f"{'x'.join(map(str, t['image_shape']))}, batch {t['batch_size']}",
        "",
        "accuracy (%)",
        f"  top-1 {_pct(c['top1'])}   top-5 {_pct(c.get('top5'))}   "
        f"mean per-class {_pct(c['mean_per_class_accuracy'])}",
    ]
    loop = result.get("train_loop_eval")
    if loop is not None:
        lines.append(f"  (training loop's eval at step {loop['step']}: {_pct(loop['accuracy'])})")
    for key, conv in (("shot_groups", "OLTR, by train counts"),
                      ("index_groups", "MiSLAS class-index ranges")):
        g = c.get(key)
        if g:
            lines.append(f"  many {_pct(g['many'])}   medium {_pct(g['medium'])}   "
                         f"few {_pct(g['few'])}   ({conv})")
    if not c.get("shot_groups"):
        lines.append("  many/medium/few: – (balanced training set)")
    pc = c["per_class_accuracy"]
    lines.append("  per class: " + " ".join(_pct(v) for v in pc[:20])
                 + (f" … ({len(pc)} classes)" if len(pc) > 20 else ""))
    lines += [
        "",
        f"calibration ({cal['num_bins']} bins): ECE {_pct(cal['ece'])}   MCE {_pct(cal['mce'])}",
        "",
        "neural collapse (test features, run's classifier W)",
        f"  NC1 {_f(nc['nc1'])}   tr(Σ_W) {_f(nc['within_class_variation'])}   "
        f"NC4 agreement {_pct(nc.get('ncc_agreement'))}%",
        f"  equinorm means/W {_f(nc['equinorm_means'])}/{_f(nc['equinorm_prototypes'])}   "
        f"equiangular means/W {_f(nc['equiangular_means'])}/{_f(nc['equiangular_prototypes'])}",
        f"  ETF distance means/W {_f(nc['etf_distance'])}/{_f(nc['etf_distance_prototypes'])}   "
        f"self-duality {_f(nc['self_duality'])}",
        f"  Fig. 19: mean ‖h‖ {_f(nc['mean_feature_norm'])}   ‖w‖ max/min "
        f"{_f(nc['max_prototype_norm'])}/{_f(nc['min_prototype_norm'])} "
        f"(ratio {_f(nc['prototype_norm_ratio'])})   min angle "
        f"{_f(nc['min_prototype_angle_deg'], '.2f')}°",
    ]
    if result.get("ood"):
        lines += ["", "OOD detection (%, ID = positive; MSP / energy T=1 / feature norm)"]
        rows = [("set", "n", "resized", "FPR95 ↓", "AUROC ↑", "AUPR ↑")]
        for name, o in result["ood"].items():
            m = o["metrics"]
            cell = lambda k: " / ".join(_pct(m[s][k]) for s in SCORE_NAMES)  # noqa: E731
            rs = (f"{o['native_size'][0]}→{o['image_shape'][0]}" if o["resized"] else "no")
            rows.append((name, str(o["num_examples"]), rs, cell("fpr95"), cell("auroc"),
                         cell("aupr")))
        lines += ["  " + l for l in _align(rows)]
    files = result.get("files", {})
    if files:
        lines += ["", "files: " + ", ".join(files.values())]
    return "\n".join(lines)


def _align(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    out = ["  ".join(v.ljust(wd) for v, wd in zip(r, widths)).rstrip() for r in rows]
    out.insert(1, "  ".join("-" * wd for wd in widths))
    return out


def format_report(results: Sequence[Mapping], markdown: bool = False) -> str:
    """A Table 2/3-style comparison of several :func:`evaluate_run` results.

    Rows are runs (run directory, method label, data, step); columns top-1, many/medium/few,
    ECE, and per OOD set (in order of first appearance) FPR95 / AUROC / AUPR, each cell
    ``MSP / energy / feature norm``. All values in %; "–" where a run lacks the value.
    """
    if not results:
        raise ValueError("no eval results to report")
    ood_names: list[str] = []
    for res in results:
        for n in res.get("ood", {}):
            if n not in ood_names:
                ood_names.append(n)
    header = ["run", "method", "data", "step", "top-1", "many", "med.", "few", "ECE"]
    for n in ood_names:
        header += [f"{n} FPR95↓", f"{n} AUROC↑", f"{n} AUPR↑"]
    rows = [header]
    group_conv = set()
    for res in results:
        r, c = res["run"], res["classification"]
        groups, conv = _groups(c)
        if conv:
            group_conv.add(conv)
        row = [Path(r["workdir"]).name, run_label(res), _data_label(r), str(r["step"]),
               _pct(c["top1"])]
        row += [_pct(groups[k]) if groups else "–" for k in ("many", "medium", "few")]
        row.append(_pct(res["calibration"]["ece"]))
        for n in ood_names:
            o = res.get("ood", {}).get(n)
            for k in ("fpr95", "auroc", "aupr"):
                row.append(" / ".join(_pct(o["metrics"][s][k]) for s in SCORE_NAMES)
                           if o else "–")
        rows.append(row)
    groups_note = {"OLTR": "OLTR groups by training-class counts (>100 / 20–100 / <20)",
                   "MiSLAS": "MiSLAS class-index ranges"}
    notes = ["All values are percentages. many/med./few: "
             + ("; ".join(groups_note[g] for g in sorted(group_conv)) if group_conv
                else "– (no long-tailed run)")
             + ". ECE: 15 equal-width bins."]
    if ood_names:
        notes.append("OOD cells: MSP / energy (T=1) / feature norm; ID test set = positive "
                     "class; FPR95 at 95% TPR.")
        for n in ood_names:
            desc = next(res["ood"][n]["description"] for res in results if n in res.get("ood", {}))
            notes.append(f"{n}: {desc}.")
    if markdown:
        esc = lambda s: s.replace("|", "\\|")  # noqa: E731
        lines = ["| " + " | ".join(esc(h) for h in rows[0]) + " |",
                 "|" + "|".join(["---"] * 4 + ["---:"] * (len(rows[0]) - 4)) + "|"]
        lines += ["| " + " | ".join(esc(v) for v in r) + " |" for r in rows[1:]]
        return "\n".join(lines + [""] + notes)
    return "\n".join(_align(rows) + [""] + notes)
