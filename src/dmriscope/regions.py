"""The white-matter atlas on the model grid: its labels, the regions present, and the occlusion fill value.

Low level on purpose (no torch import, numpy and pandas only): training's occlusion augmentation, the occlusion
analysis and the figures all read the atlas the same way, and none of them should import another's stage for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dmriscope.io import InputError

if TYPE_CHECKING:
    import torch


def read_labels(path: str) -> dict[int, str]:
    """Atlas labels TSV (columns index, name) -> {index: name}."""
    try:
        table = pd.read_csv(path, sep="\t")
    except (OSError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: cannot read labels table ({exc})") from None
    if not {"index", "name"} <= set(table.columns):
        raise InputError(f"{path}: labels table needs columns index, name")
    return {int(i): str(n) for i, n in zip(table["index"], table["name"])}


def atlas_regions(atlas: np.ndarray | torch.Tensor) -> list[int]:
    """The non-zero labels present in `atlas` (S, H, W), sorted."""
    values = np.unique(np.asarray(atlas))
    return [int(v) for v in values if v > 0]


def mean_wm_value(x: torch.Tensor, wm_mask: torch.Tensor) -> torch.Tensor:
    """Per-subject mean of the model input over the template WM mask: the value an occluded region is set to.

    x: (B, 1, S, H, W) normalised input; wm_mask: (S, H, W) bool. Returns (B,) in the input's (normalised) units.
    """
    if not bool(wm_mask.any()):
        raise InputError("occlusion: the white-matter mask is empty on the model grid")
    return x[:, 0][:, wm_mask].mean(dim=1)
