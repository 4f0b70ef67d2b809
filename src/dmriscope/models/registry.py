"""Models by name: a registry of factories, the output contract, and parameter counts (Table 4).

The contract every registered model follows (the training engine, evaluation and occlusion rely on it):

- a factory ``factory(grid: tuple[int, int, int], **hparams) -> nn.Module`` registered with ``@register("name")``;
  ``grid`` is the model input grid (sagittal slices S, then H, W, in voxels) and ``hparams`` are the keys of the
  model's ``models.<name>`` config section (bad values raise ``ValueError``);
- ``model(x)`` takes ``x`` of shape (B, 1, S, H, W), float, sagittal slices first, and returns logits (B, K) with
  K = 1 (a single logit for the positive class) or K = 2 (class 0 = negative, class 1 = positive);
  :func:`positive_probability` turns either into P(positive), shape (B,);
- the model exposes two submodules, ``model.backbone`` (feature extractor) and ``model.head`` (the classifier on
  top of it, dropout included), which :func:`count_parameters` counts separately. Parameters outside both (e.g. a
  pretraining decoder kept on the module) count only in ``total``.

Factories live in the sibling modules of this package (cnn2d, cnn3d, vit, ...); every sibling module is imported
the first time the registry is queried, so registering a new model needs no edit here.
"""

from __future__ import annotations

import importlib
import logging
import numbers
import pkgutil
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

Factory = Callable[..., nn.Module]
_FACTORIES: dict[str, Factory] = {}
_LOADED = False
PAPER_GRID = (180, 224, 224)  # FMRIB58 (182x218x182) cropped/padded, sagittal slices first


def register(name: str) -> Callable[[Factory], Factory]:
    """Decorator: register ``factory(grid, **hparams) -> nn.Module`` under ``name``."""

    def decorator(factory: Factory) -> Factory:
        old = _FACTORIES.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (factory.__module__, factory.__qualname__):
            raise ValueError(f"model name {name!r} is already registered by {old.__module__}.{old.__qualname__}")
        _FACTORIES[name] = factory
        return factory

    return decorator


def _load_model_modules() -> None:
    """Import every sibling module of this package once, so their ``@register`` decorators run."""
    global _LOADED
    if _LOADED:
        return
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "registry" and not info.name.startswith("_"):
            importlib.import_module(f"{__package__}.{info.name}")
    _LOADED = True


def available_models() -> list[str]:
    """Sorted names of every registered model."""
    _load_model_modules()
    return sorted(_FACTORIES)


def check_grid(grid: Any) -> tuple[int, int, int]:
    """Return ``grid`` as a tuple of three positive ints (S, H, W); ``ValueError`` otherwise."""
    dims = tuple(grid) if isinstance(grid, (tuple, list)) else ()
    if len(dims) != 3 or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in dims):
        raise ValueError(f"grid must be three positive integers (S, H, W), got {grid!r}")
    return tuple(int(d) for d in dims)  # type: ignore[return-value]


def build_model(name: str, grid: tuple[int, int, int] | list[int], **hparams: Any) -> nn.Module:
    """Build the model registered as ``name`` for input grid (S, H, W) with hyper-parameters ``hparams``.

    Raises ``ValueError`` for an unknown name (listing the available ones), a bad grid or bad hyper-parameters.
    """
    models = available_models()
    if name not in _FACTORIES:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(models)}")
    model = _FACTORIES[name](check_grid(grid), **hparams)
    for part in ("backbone", "head"):
        if not isinstance(getattr(model, part, None), nn.Module):
            raise TypeError(f"model {name!r} has no .{part} submodule (see dmriscope.models.registry)")
    return model


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameter counts of ``model``: ``backbone``, ``head`` and ``total`` (every parameter, counted once).

    Works on modules built on the meta device (no memory is allocated for the weights).
    """
    for part in ("backbone", "head"):
        if not isinstance(getattr(model, part, None), nn.Module):
            raise TypeError(f"{type(model).__name__} has no .{part} submodule")
    return {
        "backbone": sum(p.numel() for p in model.backbone.parameters()),
        "head": sum(p.numel() for p in model.head.parameters()),
        "total": sum(p.numel() for p in model.parameters()),
    }


def table4_rows(grid: tuple[int, int, int] = PAPER_GRID) -> list[dict[str, Any]]:
    """One row per registered model at its default (paper) hyper-parameters: model, backbone, head, total.

    Models are built on the meta device, so even the paper grid costs no weight memory.
    """
    rows = []
    for name in available_models():
        with torch.device("meta"):
            model = build_model(name, grid)
        rows.append({"model": name, **count_parameters(model)})
    return rows


def positive_probability(logits: torch.Tensor) -> torch.Tensor:
    """P(class 1 = positive), shape (B,), from logits (B, 1) (sigmoid) or (B, 2) (softmax, column 1)."""
    if logits.ndim != 2 or logits.shape[1] not in (1, 2):
        raise ValueError(f"logits must have shape (B, 1) or (B, 2), got {tuple(logits.shape)}")
    logits = logits.float()  # bf16 logits from autocast: compute the probability in float32
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    return torch.softmax(logits, dim=1)[:, 1]
