"""Flax ResNets with the classifier heads of the paper (linear, PAL, FNPAL).

Every model maps images ``(B, H, W, 3)`` to ``(logits (B, C), features (B, p))`` where the features
are the pooled penultimate representation ``h = f(x)`` the losses and metrics of the paper use.

Stems: ``"cifar"`` (3×3 conv, stride 1, no max-pool) and ``"imagenet"`` (7×7/2 conv + 3×3/2
max-pool). ``final_relu=False`` drops the ReLU after the last residual block, as the paper does for
PAL/FNPAL (Appendix C.2), so features can point anywhere, including along −w_c.

Heads:
  * ``linear``: learnable ``W (p, C)`` and ``b``; init ``"random"`` (LeCun normal) or ``"etf"``
    (a simplex ETF, Appendix D.1), multiplied by ``init_scale``.
  * ``pal``: prototype-anchored learning, ``W`` fixed to a simplex ETF of norm ``scale``; an
    optional learnable bias. The prototypes live in the ``"prototypes"`` variable collection, not in
    ``"params"``: the optimizer never sees them, weight decay never touches them, and they are saved
    with the checkpoint.
  * ``fnpal``: feature-normalized PAL: ``logits = scale · ŵ_cᵀ ĥ`` with unit ETF prototypes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ul_jax.layers import BatchNorm, resolve_norm_impl
from ul_jax.prototypes import simplex_etf

ModuleDef = Any

__all__ = [
    "ResNet",
    "ClassifierHead",
    "Classifier",
    "build_model",
    "ARCHS",
    "feature_dim",
    "count_params",
]


def _add_shortcut(block, residual, y):
    """``y`` plus the block's input (through a strided 1×1 projection ``conv_proj``/``norm_proj``
    where the shapes differ), then ReLU unless ``block.last_relu`` is off. Called inside the
    block's ``nn.compact`` ``__call__``, so the projection's parameters belong to the block."""
    if residual.shape != y.shape:
        residual = block.conv(
            y.shape[-1], (1, 1), (block.strides, block.strides), name="conv_proj"
        )(residual)
        residual = block.norm(name="norm_proj")(residual)
    y = residual + y
    return nn.relu(y) if block.last_relu else y


class BasicBlock(nn.Module):
    """Two 3×3 convolutions (ResNet-18/34 and the small CIFAR ResNets)."""

    filters: int
    strides: int
    conv: ModuleDef
    norm: ModuleDef
    last_relu: bool = True

    @nn.compact
    def __call__(self, x):
        residual = x
        y = self.conv(self.filters, (3, 3), (self.strides, self.strides))(x)
        y = nn.relu(self.norm()(y))
        y = self.conv(self.filters, (3, 3))(y)
        y = self.norm(scale_init=nn.initializers.zeros_init())(y)
        return _add_shortcut(self, residual, y)


class BottleneckBlock(nn.Module):
    """1×1 → 3×3 → 1×1 (×4) bottleneck (ResNet-50), stride on the 3×3 (torchvision v1.5)."""

    filters: int
    strides: int
    conv: ModuleDef
    norm: ModuleDef
    last_relu: bool = True

    @nn.compact
    def __call__(self, x):
        residual = x
        y = nn.relu(self.norm()(self.conv(self.filters, (1, 1))(x)))
        y = nn.relu(self.norm()(self.conv(self.filters, (3, 3), (self.strides, self.strides))(y)))
        y = self.conv(self.filters * 4, (1, 1))(y)
        y = self.norm(scale_init=nn.initializers.zeros_init())(y)
        return _add_shortcut(self, residual, y)


class ResNet(nn.Module):
    """ResNet trunk: images ``(B, H, W, 3)`` → pooled features ``(B, p)``."""

    stage_sizes: Sequence[int]
    block_cls: ModuleDef
    widths: Sequence[int] = (64, 128, 256, 512)
    stem: str = "cifar"
    final_relu: bool = True
    dtype: Any = jnp.float32
    axis_name: str | None = None  # set to average BatchNorm statistics across devices (pmap/shmap)
    norm_impl: str = "flax"  # BatchNorm implementation: flax | fused (ul_jax.layers)

    @nn.compact
    def __call__(self, x, train: bool = True):
        conv = partial(
            nn.Conv,
            use_bias=False,
            dtype=self.dtype,
            padding="SAME",
            kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
        )
        norm = partial(
            BatchNorm,
            impl=self.norm_impl,
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            dtype=self.dtype,
            axis_name=self.axis_name,
        )
        if self.stem == "cifar":
            x = conv(self.widths[0], (3, 3), name="conv_init")(x)
            x = nn.relu(norm(name="bn_init")(x))
        elif self.stem == "imagenet":
            x = conv(self.widths[0], (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name="conv_init")(x)
            x = nn.relu(norm(name="bn_init")(x))
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        else:
            raise ValueError(f"stem must be 'cifar' or 'imagenet'; got stem={self.stem!r}")
        n_stages = len(self.stage_sizes)
        for i, (blocks, width) in enumerate(zip(self.stage_sizes, self.widths)):
            for j in range(blocks):
                last = i == n_stages - 1 and j == blocks - 1
                x = self.block_cls(
                    width,
                    strides=2 if (i > 0 and j == 0) else 1,
                    conv=conv,
                    norm=norm,
                    last_relu=self.final_relu or not last,
                )(x)
        return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)


def _etf_init(num_classes: int, dim: int, seed: int, scale: float) -> np.ndarray:
    # A host-side constant of (seed, C, p): computed eagerly even when ``model.init`` is traced
    # under ``jit`` (simplex_etf orthogonalizes in NumPy, which cannot take tracers).
    with jax.ensure_compile_time_eval():
        return np.asarray(simplex_etf(jax.random.PRNGKey(seed), num_classes, dim, scale=scale))


class ClassifierHead(nn.Module):
    """Linear / PAL / FNPAL head: features ``(B, p)`` → logits ``(B, C)`` (see module doc)."""

    num_classes: int
    kind: str = "linear"  # linear | pal | fnpal
    scale: float = 1.0  # PAL prototype norm; FNPAL logit scale; linear init scale
    use_bias: bool = True  # linear and pal (fnpal has no bias)
    init: str = "random"  # linear head: random | etf
    prototype_seed: int = 0

    @nn.compact
    def __call__(self, h):
        p, c = h.shape[-1], self.num_classes
        if self.kind == "linear":
            if self.init == "etf":
                w0 = _etf_init(c, p, self.prototype_seed, self.scale)
                kernel_init = lambda *_: jnp.asarray(w0)
            elif self.init == "random":
                base = nn.initializers.lecun_normal()
                kernel_init = lambda k, s, d=jnp.float32: self.scale * base(k, s, d)
            else:
                raise ValueError(f"head init must be 'random' or 'etf'; got {self.init!r}")
            w = self.param("kernel", kernel_init, (p, c))
            logits = h @ w
            if self.use_bias:
                logits = logits + self.param("bias", nn.initializers.zeros_init(), (c,))
            return logits
        if self.kind in ("pal", "fnpal"):
            scale = self.scale if self.kind == "pal" else 1.0
            w = self.variable(
                "prototypes",
                "kernel",
                lambda: jnp.asarray(_etf_init(c, p, self.prototype_seed, scale)),
            ).value
            w = jax.lax.stop_gradient(w)
            if self.kind == "pal":
                logits = h @ w
                if self.use_bias:
                    logits = logits + self.param("bias", nn.initializers.zeros_init(), (c,))
                return logits
            h_hat = h * jax.lax.rsqrt(jnp.maximum(jnp.sum(h * h, -1, keepdims=True), 1e-24))
            return self.scale * (h_hat @ w)
        raise ValueError(f"head kind must be 'linear', 'pal' or 'fnpal'; got {self.kind!r}")


class Classifier(nn.Module):
    """Trunk + head: ``(images, train) → (logits (B, C), features (B, p))``."""

    trunk: nn.Module
    head: nn.Module

    def __call__(self, x, train: bool = True):
        features = self.trunk(x, train=train)
        return self.head(features), features


ARCHS: dict[str, dict[str, Any]] = {
    "resnet18": dict(stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock),
    "resnet34": dict(stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock),
    "resnet50": dict(stage_sizes=(3, 4, 6, 3), block_cls=BottleneckBlock),
    # small CIFAR ResNet (He et al. 2016 §4.2, ResNet-20 layout 3×3 blocks, 16/32/64 channels)
    "resnet20": dict(stage_sizes=(3, 3, 3), block_cls=BasicBlock, widths=(16, 32, 64)),
    # a tiny one for tests and the digits demo
    "resnet8": dict(stage_sizes=(1, 1, 1), block_cls=BasicBlock, widths=(16, 32, 64)),
}


def build_model(
    arch: str,
    num_classes: int,
    *,
    stem: str = "cifar",
    final_relu: bool = True,
    head: str = "linear",
    head_scale: float = 1.0,
    head_bias: bool = True,
    head_init: str = "random",
    prototype_seed: int = 0,
    width_multiplier: float = 1.0,
    dtype: Any = jnp.float32,
    axis_name: str | None = None,
    norm_impl: str = "auto",
) -> Classifier:
    """Builds a :class:`Classifier`; raises ``ValueError`` naming a bad field. ``norm_impl``:
    ``"auto"`` (``"fused"`` on CPU, ``"flax"`` elsewhere; ``"flax"`` whenever ``axis_name`` is
    set), ``"flax"`` or ``"fused"`` (:mod:`ul_jax.layers`); every choice has the same variables."""
    if arch not in ARCHS:
        raise ValueError(f"model arch must be one of {sorted(ARCHS)}; got arch={arch!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2; got num_classes={num_classes}")
    spec = dict(ARCHS[arch])
    widths = spec.pop("widths", (64, 128, 256, 512))
    widths = tuple(max(1, int(round(w * width_multiplier))) for w in widths)
    if norm_impl == "auto" and axis_name is not None:
        norm_impl = "flax"  # the fused BatchNorm has no cross-device mean (ul_jax.layers)
    norm_impl = resolve_norm_impl(norm_impl)
    trunk = ResNet(
        widths=widths,
        stem=stem,
        final_relu=final_relu,
        dtype=dtype,
        axis_name=axis_name,
        norm_impl=norm_impl,
        **spec,
    )
    feat_dim = widths[-1] * (4 if spec["block_cls"] is BottleneckBlock else 1)
    if head in ("pal", "fnpal") and feat_dim < num_classes - 1:
        raise ValueError(
            f"head={head!r} needs feature dim >= num_classes-1={num_classes - 1}; "
            f"arch={arch!r} with width_multiplier={width_multiplier} gives {feat_dim}"
        )
    return Classifier(
        trunk=trunk,
        head=ClassifierHead(
            num_classes,
            kind=head,
            scale=head_scale,
            use_bias=head_bias,
            init=head_init,
            prototype_seed=prototype_seed,
        ),
    )


def feature_dim(arch: str, width_multiplier: float = 1.0) -> int:
    """Penultimate feature dimension p of ``arch``."""
    spec = ARCHS[arch]
    w = max(1, int(round(spec.get("widths", (64, 128, 256, 512))[-1] * width_multiplier)))
    return w * (4 if spec["block_cls"] is BottleneckBlock else 1)


def count_params(params) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))
