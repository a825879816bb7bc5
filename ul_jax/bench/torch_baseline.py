"""The same train step in PyTorch, for ``python -m launch.bench train --baseline torch``.

PyTorch is an optional benchmark dependency (``pip install -e '.[bench]'``), never one of the
library: this module imports it only inside :func:`torch_train_benchmark`.

What is timed matches :func:`ul_jax.bench.train.train_benchmark` step for step, in float32 eager
PyTorch on the CPU: a uint8 batch ``(B, H, W, 3)`` → float, pad-``p`` random crop and horizontal
flip, per-channel normalization, NCHW; the ResNet trunk of ``ul_jax.models`` (same stem, blocks,
widths, strides, BatchNorm momentum/epsilon, zero-initialized last BN scale of each block,
projection shortcuts, optional final ReLU, global average pooling); the head (PAL: a fixed
simplex-ETF buffer without gradient; linear: a learnable ``nn.Linear``); the loss (unhinged:
``−z_y + γ Σ_{j≠y} z_j``, or cross-entropy) averaged over the batch, plus EFR ``λ Σ_i ‖h_i‖²``;
``backward``; SGD with momentum and weight decay on every parameter (``torch.optim.SGD``, the same
update as optax's ``add_decayed_weights`` → ``sgd(momentum)``); the batch accuracy. The
parameter count is checked against the Flax model's. ``steps`` timed steps after two warm-up
steps, ``torch.get_num_threads()`` intra-op threads.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

__all__ = ["torch_train_benchmark"]


def _resnet(torch, nn, arch_spec: dict, widths, stem: str, final_relu: bool):
    """The ResNet trunk of :mod:`ul_jax.models` in ``torch.nn``."""
    bottleneck = arch_spec["block_cls"].__name__ == "BottleneckBlock"
    expansion = 4 if bottleneck else 1

    def bn(c, zero=False):
        b = nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)  # torch momentum = 1 − flax momentum
        if zero:
            nn.init.zeros_(b.weight)
        return b

    class Block(nn.Module):
        def __init__(self, cin, filters, stride, last_relu):
            super().__init__()
            cout = filters * expansion
            if bottleneck:
                self.body = nn.Sequential(
                    nn.Conv2d(cin, filters, 1, bias=False),
                    bn(filters),
                    nn.ReLU(),
                    nn.Conv2d(filters, filters, 3, stride, 1, bias=False),
                    bn(filters),
                    nn.ReLU(),
                    nn.Conv2d(filters, cout, 1, bias=False),
                    bn(cout, zero=True),
                )
            else:
                self.body = nn.Sequential(
                    nn.Conv2d(cin, filters, 3, stride, 1, bias=False),
                    bn(filters),
                    nn.ReLU(),
                    nn.Conv2d(filters, filters, 3, 1, 1, bias=False),
                    bn(cout, zero=True),
                )
            self.proj = None
            if stride != 1 or cin != cout:
                self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), bn(cout))
            self.last_relu = last_relu

        def forward(self, x):
            y = self.body(x)
            y = y + (x if self.proj is None else self.proj(x))
            return torch.relu(y) if self.last_relu else y

    layers: list[Any]
    if stem == "cifar":
        layers = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), bn(widths[0]), nn.ReLU()]
    else:
        layers = [
            nn.Conv2d(3, widths[0], 7, 2, 3, bias=False),
            bn(widths[0]),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        ]
    cin = widths[0]
    stages = arch_spec["stage_sizes"]
    for i, (blocks, w) in enumerate(zip(stages, widths)):
        for j in range(blocks):
            last = i == len(stages) - 1 and j == blocks - 1
            layers.append(Block(cin, w, 2 if (i > 0 and j == 0) else 1, final_relu or not last))
            cin = w * expansion
    return nn.Sequential(*layers), cin


def check_mirrorable(config) -> None:
    """Refuses a config whose train step the PyTorch baseline does not mirror exactly (it must
    never benchmark another step than the one named): float32, a ``pal`` or ``linear`` head, the
    ``ul`` or ``ce`` loss, no RLR, and an EFR weight stated as the batch-sum λ_b.

    Raises:
      ValueError: naming the field and its value.
    """
    if config.model.dtype != "float32":
        raise ValueError(f"the torch baseline runs float32 only; got {config.model.dtype!r}")
    if config.head.kind not in ("pal", "linear"):
        raise ValueError(f"the torch baseline has heads pal and linear; got {config.head.kind!r}")
    if config.objective.loss not in ("ul", "ce"):
        raise ValueError(
            "the torch baseline mirrors objective.loss 'ul' and 'ce' only; got "
            f"objective.loss={config.objective.loss!r}"
        )
    if config.objective.rlr:
        raise ValueError("the torch baseline has no RLR")
    conv = config.objective.get("efr_convention", "batch_sum")
    if config.objective.efr_weight and conv != "batch_sum":
        raise ValueError(
            "the torch baseline takes the EFR weight as the batch-sum λ_b; got "
            f"objective.efr_convention={conv!r}"
        )


def torch_train_benchmark(config, steps: int = 5, *, flax_param_count: int | None = None) -> dict:
    """Images/s of the PyTorch train step equivalent to ``config``'s (module docstring)."""
    check_mirrorable(config)
    try:
        import torch
        from torch import nn
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ValueError(
            "--baseline torch needs PyTorch: pip install -c constraints.txt -e '.[bench]'"
        ) from e
    from ul_jax.models import ARCHS
    from ul_jax.prototypes import simplex_etf

    spec = dict(ARCHS[config.model.arch])
    widths = spec.pop("widths", (64, 128, 256, 512))
    widths = tuple(max(1, int(round(w * config.model.width_multiplier))) for w in widths)
    from ul_jax.train import NUM_CLASSES

    num_classes = NUM_CLASSES[config.data.name]
    size = config.data.image_size or 32
    batch = config.batch_size
    torch.manual_seed(config.seed)
    trunk, feat = _resnet(torch, nn, spec, widths, config.model.stem, config.model.final_relu)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = trunk
            if config.head.kind == "pal":
                import jax

                w = np.asarray(
                    simplex_etf(jax.random.PRNGKey(0), num_classes, feat, scale=config.head.scale)
                )
                self.register_buffer("proto", torch.tensor(w, dtype=torch.float32))  # (p, C)
                self.bias = nn.Parameter(torch.zeros(num_classes)) if config.head.bias else None
                self.linear = None
            else:
                self.linear = nn.Linear(feat, num_classes, bias=config.head.bias)

        def forward(self, x):
            h = self.trunk(x).mean(dim=(2, 3))
            if self.linear is not None:
                return self.linear(h), h
            z = h @ self.proto
            return (z + self.bias if self.bias is not None else z), h

    net = Net()
    n_params = sum(p.numel() for p in net.parameters())
    if flax_param_count is not None and n_params != flax_param_count:
        raise ValueError(
            f"torch baseline has {n_params} parameters, the Flax model {flax_param_count}: "
            "the models differ"
        )
    opt = torch.optim.SGD(
        net.parameters(),
        lr=config.optimizer.lr,
        momentum=config.optimizer.momentum,
        weight_decay=config.optimizer.weight_decay,
    )
    gamma = config.objective.gamma
    gamma = 1.0 / (num_classes - 1) if gamma is None else gamma
    lam = config.objective.efr_weight
    pad = config.data.crop_padding
    flip = config.data.augment == "crop_flip"
    mean = torch.tensor([125.0] * 3).view(1, 3, 1, 1)
    std = torch.tensor([63.0] * 3).view(1, 3, 1, 1)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, num_classes, batch).astype(np.int64))
    gen = torch.Generator().manual_seed(0)

    def step():
        x = images.permute(0, 3, 1, 2).float()
        if config.data.augment != "none":
            x = nn.functional.pad(x, (pad, pad, pad, pad))
            dx, dy = torch.randint(0, 2 * pad + 1, (2, batch), generator=gen)
            rows = (dy[:, None] + torch.arange(size)[None, :])[:, None, :, None]
            cols = (dx[:, None] + torch.arange(size)[None, :])[:, None, None, :]
            x = x[
                torch.arange(batch)[:, None, None, None],
                torch.arange(3)[None, :, None, None],
                rows,
                cols,
            ]
            if flip:
                f = torch.rand(batch, generator=gen) < 0.5
                x = torch.where(f[:, None, None, None], x.flip(3), x)
        x = (x - mean) / std
        z, h = net(x)
        if config.objective.loss == "ul":
            zy = z.gather(1, labels[:, None])[:, 0]
            loss = (-(1 + gamma) * zy + gamma * z.sum(1)).mean()
        else:
            loss = nn.functional.cross_entropy(z, labels)
        if lam:
            loss = loss + lam * (h * h).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach(), (z.argmax(1) == labels).float().mean()

    net.train()
    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss, _ = step()
    step_s = (time.perf_counter() - t0) / steps
    return {
        "framework": f"torch {torch.__version__} (eager, float32, NCHW)",
        "threads": torch.get_num_threads(),
        "params": n_params,
        "train_step_s": step_s,
        "train_images_per_sec": batch / step_s,
        "finite": bool(torch.isfinite(loss)),
    }
