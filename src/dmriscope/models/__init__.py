"""Classifiers built by name (cnn2d, cnn3d, vit, ...); see :mod:`dmriscope.models.registry` for the contract."""

from dmriscope.models.registry import (
    PAPER_GRID,
    available_models,
    build_model,
    count_parameters,
    positive_probability,
    register,
    table4_rows,
)

__all__ = [
    "PAPER_GRID",
    "available_models",
    "build_model",
    "count_parameters",
    "positive_probability",
    "register",
    "table4_rows",
]
