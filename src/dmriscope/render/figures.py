"""Figures 4-6: the regions that drive each classifier, per metric.

`plot_significant_regions` draws, for each model (rows), the significant regions in colour with their atlas numbers
on axial slices of the FA template (columns). The slices are chosen greedily so that every region significant in any
model appears in at least one of them (set cover over axial slices, at most `n_slices`). `plot_heatmap` is the
region x model map of median delta_p with * (raw p < alpha) and ** (BH-FDR significant) marks. Both use fixed
physical sizes and fonts, so they read the same at the synthetic ~4 mm grid and at 1 mm; images are reoriented to
RAS (nibabel) and drawn with voxel aspect from the header, neurological convention (left on the left).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence

import matplotlib.patheffects as path_effects
import nibabel as nib
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from dmriscope.io import InputError, atomic_path, load_nifti
from dmriscope.regions import read_labels
from dmriscope.stats import (
    UNION,
    model_metric_from_path,
    read_tsv,
    significant_regions,
)

log = logging.getLogger(__name__)

PANEL_IN = 2.2  # panel width in inches, independent of the grid resolution
LABEL_PT = 7


def region_color(region: int) -> tuple[float, float, float]:
    """A fixed saturated colour per atlas index (tab10 without grey, then Dark2), the same in every figure."""
    palette = [c for i, c in enumerate(colormaps["tab10"].colors) if i != 7] + list(colormaps["Dark2"].colors[:7])
    return tuple(palette[region % len(palette)])


def short_name(name: str, width: int = 58) -> str:
    """A region name of at most `width` characters (JHU names run to ~100): parenthetical remarks go first, then the
    middle, keeping the final hemisphere letter (L/R) so left and right stay distinct."""
    if len(name) <= width:
        return name
    name = re.sub(r"\s*\([^)]*\)", "", name).strip()
    if len(name) <= width:
        return name
    side = name[-2:] if name[-2:] in (" L", " R") else ""
    return name[: width - 1 - len(side)].rstrip() + "…" + side


def choose_slices(atlas: np.ndarray, regions: Sequence[int], n_slices: int) -> list[int]:
    """Axial slices (indices along axis 2 of the RAS atlas) covering all `regions`, greedily, at most `n_slices`.

    Without regions: the slice through the middle of the labelled volume.
    """
    labelled = np.nonzero((atlas > 0).any(axis=(0, 1)))[0]
    if labelled.size == 0:
        raise InputError("figures: the atlas has no labelled voxel")
    if not regions:
        return [int(labelled[labelled.size // 2])]
    present = np.stack([np.isin(atlas[:, :, z], regions) for z in range(atlas.shape[2])])
    counts = {r: (atlas == r).sum(axis=(0, 1)) for r in regions}  # voxels of r per slice
    uncovered, chosen = set(regions), []
    while uncovered and len(chosen) < n_slices:
        score = [(len({r for r in uncovered if counts[r][z]}), int(present[z].sum())) for z in range(atlas.shape[2])]
        z = int(max(range(len(score)), key=lambda k: score[k]))
        if score[z][0] == 0:
            break
        chosen.append(z)
        uncovered -= {r for r in uncovered if counts[r][z]}
    return sorted(chosen)


def label_point(mask2d: np.ndarray) -> tuple[int, int]:
    """The voxel of a 2D region mask nearest its centroid (a label position inside the region)."""
    ij = np.argwhere(mask2d)
    centre = ij.mean(axis=0)
    i, j = ij[np.argmin(((ij - centre) ** 2).sum(axis=1))]
    return int(i), int(j)


def _draw_panel(ax, template: np.ndarray, atlas: np.ndarray, z: int, regions: Sequence[int], aspect: float) -> None:
    """One axial slice: template in grey, WM outline, `regions` filled in colour with their numbers."""
    vmax = 1.6 * float(np.percentile(template[template > 0], 99)) if (template > 0).any() else 1.0
    ax.imshow(
        template[:, :, z].T, cmap="gray", vmin=0, vmax=vmax, origin="lower", aspect=aspect, interpolation="nearest"
    )
    wm = atlas[:, :, z] > 0
    if wm.any() and not wm.all():
        ax.contour(wm.T.astype(float), levels=[0.5], colors="0.6", linewidths=0.4)
    overlay = np.zeros(atlas.shape[:2] + (4,))
    for r in regions:
        mask = atlas[:, :, z] == r
        if not mask.any():
            continue
        overlay[mask] = region_color(r) + (0.85,)
        ax.contour(mask.T.astype(float), levels=[0.5], colors="black", linewidths=0.5)
        i, j = label_point(mask)
        text = ax.text(i, j, str(r), ha="center", va="center", fontsize=LABEL_PT, color="white", weight="bold")
        text.set_path_effects([path_effects.withStroke(linewidth=1.5, foreground="black")])
    ax.imshow(overlay.transpose(1, 0, 2), origin="lower", aspect=aspect, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_significant_regions(
    template: np.ndarray,
    atlas: np.ndarray,
    zooms: Sequence[float],
    significant: Mapping[str, Sequence[int]],
    names: Mapping[int, str],
    out: str | os.PathLike,
    title: str = "",
    n_slices: int = 4,
) -> None:
    """Rows = models, columns = axial slices; template (X, Y, Z) and atlas (X, Y, Z) in RAS, zooms in mm."""
    union = sorted({int(r) for regs in significant.values() for r in regs})
    slices = choose_slices(atlas, union, n_slices)
    aspect = float(zooms[1]) / float(zooms[0])
    panel_h = PANEL_IN * aspect * template.shape[1] / template.shape[0]
    width = max(PANEL_IN * len(slices) + 1.2, 7.0)
    n_cols = 2 if width >= 9.0 else 1
    legend_h = 0.14 * ((len(union) + n_cols - 1) // n_cols + 1) + 0.2
    rows = max(len(significant), 1)
    height = panel_h * rows + legend_h + 0.8
    fig = Figure(figsize=(width, height))
    grid = fig.add_gridspec(
        rows + 1,
        len(slices),
        height_ratios=[panel_h] * rows + [legend_h],
        hspace=0.08,
        wspace=0.03,
        left=1.1 / width,
        right=0.99,
        top=1 - 0.7 / height,
        bottom=0.02,
    )
    for row, (model, regs) in enumerate(significant.items()):
        for col, z in enumerate(slices):
            ax = fig.add_subplot(grid[row, col])
            _draw_panel(ax, template, atlas, z, [int(r) for r in regs], aspect)
            if row == 0:
                ax.set_title(f"axial z = {z}", fontsize=8)
            if col == 0:
                ax.set_ylabel(f"{model}\n({len(regs)} regions)", fontsize=8)
    legend = fig.add_subplot(grid[rows, :])
    legend.axis("off")
    entries = [f"{r}  {short_name(names.get(r, '?'))}" for r in union] or ["no significant region"]
    per_col = (len(entries) + n_cols - 1) // n_cols
    for col in range(n_cols):
        legend.text(
            col / n_cols,
            1.0,
            "\n".join(entries[col * per_col : (col + 1) * per_col]),
            va="top",
            ha="left",
            fontsize=7,
            transform=legend.transAxes,
        )
    fig.suptitle(title, fontsize=10, y=1 - 0.15 / height, va="top")
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=150)


def plot_heatmap(stats_by_model: Mapping[str, pd.DataFrame], out: str | os.PathLike, title: str = "") -> None:
    """Region x model map of median delta_p; '*' raw p < alpha, '**' FDR significant. Tables: region_statistics."""
    frames = [t.assign(model=m) for m, t in stats_by_model.items()]
    if not frames:
        raise InputError("figures: no region statistics to plot")
    long = pd.concat(frames, ignore_index=True)
    models = list(stats_by_model)
    value = long.pivot(index="region", columns="model", values="median_delta_p").reindex(columns=models)
    raw, fdr = (
        long.pivot(index="region", columns="model", values=col).reindex(columns=models).fillna(False).astype(bool)
        for col in ("significant_raw", "significant_fdr")
    )
    names = long.drop_duplicates("region").set_index("region")["name"]
    n_reg = len(value)
    ticks = [f"{r}  {short_name(names[r], 44)}" for r in value.index]
    left = 0.3 + 0.055 * max((len(t) for t in ticks), default=10)  # inches for the 6 pt tick labels
    width, height = left + 0.6 * len(models) + 1.3, 0.19 * n_reg + 1.6
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes([left / width, 1.0 / height, 0.6 * len(models) / width, 1 - 1.5 / height])
    vmax = float(np.nanmax(np.abs(value.to_numpy()))) if n_reg else 0.0
    vmax = vmax if vmax > 0 else 1e-6
    image = ax.imshow(
        value.to_numpy(dtype=float),
        cmap="RdBu_r",
        aspect="auto",
        interpolation="nearest",
        norm=TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax),
    )
    for i, region in enumerate(value.index):
        for j, model in enumerate(models):
            mark = "**" if fdr.loc[region, model] else ("*" if raw.loc[region, model] else "")
            if mark:
                text = ax.text(j, i, mark, ha="center", va="center", fontsize=8, weight="bold")
                text.set_path_effects([path_effects.withStroke(linewidth=1.5, foreground="white")])
    ax.set_yticks(range(n_reg), ticks, fontsize=6)
    ax.set_xticks(range(len(models)), models, fontsize=7, rotation=30, ha="right")
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    bar.set_label("median Δp", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    ax.set_title(f"{title}\n* p < α (raw)   ** BH-FDR", fontsize=8)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=150)


def _load_ras(path: str | os.PathLike, dtype: type) -> tuple[np.ndarray, tuple[float, ...]]:
    """Load a 3D NIfTI reoriented to RAS: (data, voxel sizes in mm)."""
    load_nifti(path, ndim=3)  # checks: exists, readable, finite
    img = nib.as_closest_canonical(nib.load(path))
    return np.asarray(img.dataobj, dtype=dtype), tuple(float(z) for z in img.header.get_zooms()[:3])


def render_region_figures(
    *,
    regions: Sequence[str | os.PathLike],
    union: str | os.PathLike,
    template: str | os.PathLike,
    atlas: str | os.PathLike,
    labels: str | os.PathLike,
    significant: str | os.PathLike,
    heatmap: str | os.PathLike,
    metric: str,
    criterion: str = "raw",
    n_slices: int = 4,
) -> None:
    """Rule render_region_figures: both figures of one metric from the models' ``.../{model}/{metric}/regions.tsv``.

    labels: the atlas labels TSV (index, name). The significant-regions figure ends with a row for the region-level
    union over models (``union``: ``results/occlusion/union/{metric}/regions.tsv``).
    """
    needed = (
        "region",
        "name",
        "median_delta_p",
        "p_raw",
        f"significant_{criterion}",
        "significant_raw",
        "significant_fdr",
    )
    tables = {model_metric_from_path(p)[0]: read_tsv(p, required=needed) for p in regions}
    template_data, zooms = _load_ras(template, np.float32)
    atlas_data, _ = _load_ras(atlas, np.int16)
    if template_data.shape != atlas_data.shape:
        raise InputError(f"{atlas}: grid {atlas_data.shape} differs from the template's {template_data.shape}")
    flagged = {m: significant_regions(t, criterion) for m, t in tables.items()}
    flagged[UNION] = significant_regions(read_tsv(union, required=("region", f"significant_{criterion}")), criterion)
    plot_significant_regions(
        template_data,
        atlas_data,
        zooms,
        flagged,
        read_labels(labels),
        significant,
        title=f"{metric}: significant regions ({criterion} p)",
        n_slices=n_slices,
    )
    plot_heatmap(tables, heatmap, title=f"{metric}: median Δp per region")
    log.info("%s: figures with %s", metric, {m: len(s) for m, s in flagged.items()})
