"""Registration QC: correlation with the template before/after, and an edge overlay on three orthogonal slices.

`render_overlays` draws the figures of all subjects in one process (rule render_registration_qc): matplotlib's
import and first figure cost ~0.5 s of CPU, which a per-subject registration job would pay 240 (HCP: 1031) times.

"Before" is the native FA resampled onto the template grid by its header affine alone (no registration), so the
gain from before to after is what registration bought. Correlations are Pearson's r over the template brain
(template > 0).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from nibabel.processing import resample_from_to

from dmriscope.io import InputError, atomic_path, load_nifti, progress

log = logging.getLogger(__name__)

QC_COLUMNS = ("subject", "backend", "method", "n_voxels", "corr_before", "corr_after")


def resample_by_header(
    data: np.ndarray, affine: np.ndarray, shape: tuple[int, ...], ref_affine: np.ndarray
) -> np.ndarray:
    """Resample a 3D array onto the grid (shape, ref_affine) by the two header affines (trilinear, 0 outside)."""
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    out = resample_from_to(img, (tuple(shape), ref_affine), order=1, mode="constant", cval=0.0)
    return np.asarray(out.dataobj, dtype=np.float32)


def masked_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Pearson r of `a` and `b` (same shape) over `mask`; NaN when either is constant there."""
    x = np.asarray(a, dtype=np.float64)[mask]
    y = np.asarray(b, dtype=np.float64)[mask]
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def qc_row(
    moving: np.ndarray,
    moving_affine: np.ndarray,
    registered: np.ndarray,
    template: np.ndarray,
    template_affine: np.ndarray,
    *,
    subject: str = "",
    backend: str = "",
    method: str = "",
) -> dict[str, Any]:
    """The QC numbers of one registration: correlations with the template inside template > 0, before and after."""
    mask = template > 0
    before = resample_by_header(moving, moving_affine, template.shape, template_affine)
    row = {
        "subject": subject,
        "backend": backend,
        "method": method,
        "n_voxels": int(mask.sum()),
        "corr_before": masked_correlation(before, template, mask),
        "corr_after": masked_correlation(registered, template, mask),
    }
    if not row["corr_after"] > row["corr_before"]:
        log.warning(
            "%s: registration did not raise the correlation with the template (%.3f -> %.3f)",
            subject or "subject",
            row["corr_before"],
            row["corr_after"],
        )
    return row


def write_qc_tsv(row: dict[str, Any], path: str | os.PathLike) -> None:
    """Write one QC row as a one-line TSV (columns `QC_COLUMNS`), atomically."""
    frame = pd.DataFrame([row], columns=list(QC_COLUMNS))
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6f")


def _slices(volume: np.ndarray, centre: tuple[int, int, int]) -> list[np.ndarray]:
    """Sagittal, coronal and axial slices through `centre`, transposed for display (rows = second axis)."""
    i, j, k = centre
    return [volume[i, :, :].T, volume[:, j, :].T, volume[:, :, k].T]


class OverlayFigure:
    """The QC figure of one template, drawn once and saved for subject after subject.

    Three orthogonal slices through the template brain's centre of mass: a subject's registered FA in grey, with
    the template's brain outline (template > 0) and its high-FA contour (halfway between the brain's median and 95th
    percentile) on top. The template's contours and the layout are the same for every subject, so `save` only swaps
    the image data, its grey range and the title (~4x faster per subject than drawing the figure anew).
    """

    def __init__(self, template: np.ndarray) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from scipy import ndimage

        self.mask = template > 0
        self.centre = tuple(round(c) for c in ndimage.center_of_mass(self.mask))
        inside = template[self.mask]
        self.high = float(0.5 * (np.median(inside) + np.percentile(inside, 95)))  # between typical and bright FA
        self.fig, axes = plt.subplots(1, 3, figsize=(10, 3.8))
        self.images = []
        for ax, tpl, name in zip(axes, _slices(template, self.centre), ("sagittal", "coronal", "axial")):
            self.images.append(ax.imshow(np.zeros_like(tpl), cmap="gray", origin="lower", interpolation="nearest"))
            if np.ptp(tpl) > 0:
                ax.contour((tpl > 0).astype(float), levels=[0.5], colors="tab:red", linewidths=0.8)
                if tpl.max() > self.high:
                    ax.contour(tpl, levels=[self.high], colors="tab:cyan", linewidths=0.6)
            ax.set_title(name)
            ax.axis("off")
        self.title = self.fig.suptitle(self._caption("sub-X: r 0.000 -> 0.000"), fontsize=9)
        self.fig.tight_layout()

    def _caption(self, title: str) -> str:
        return f"{title}\nred: template brain outline, cyan: template FA >= {self.high:.2f}"

    def save(self, registered: np.ndarray, path: str | os.PathLike, title: str = "") -> None:
        """PNG of `registered` (the template's grid) at `path`, written atomically."""
        vmax = float(np.percentile(registered[self.mask], 99.5)) or 1.0
        for image, data in zip(self.images, _slices(registered, self.centre)):
            image.set_data(data)
            image.set_clim(0, vmax)
        self.title.set_text(self._caption(title))
        with atomic_path(path) as tmp:
            self.fig.savefig(tmp, dpi=100, format="png")

    def close(self) -> None:
        import matplotlib.pyplot as plt

        plt.close(self.fig)


def _qc_title(qc_tsv: str | os.PathLike) -> str:
    """'sub-X: r before -> after' from a subject's QC TSV (`write_qc_tsv`); InputError naming a broken file."""
    try:
        row = pd.read_csv(qc_tsv, sep="\t").iloc[0]
        return f"{row['subject']}: r {row['corr_before']:.3f} -> {row['corr_after']:.3f}"
    except (OSError, IndexError, KeyError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{qc_tsv}: not a registration QC table ({type(exc).__name__}: {exc})") from None


def render_overlays(
    *,
    registered: Sequence[str | os.PathLike],
    qc_tsvs: Sequence[str | os.PathLike],
    template: str | os.PathLike,
    pngs: Sequence[str | os.PathLike],
) -> None:
    """Rule render_registration_qc: the `OverlayFigure` of every subject (registered FA i, its QC TSV i -> PNG i)."""
    if not len(registered) == len(qc_tsvs) == len(pngs):
        raise ValueError(f"{len(registered)} registered maps, {len(qc_tsvs)} QC tables and {len(pngs)} figures")
    template_data, _ = load_nifti(template, ndim=3)
    figure = OverlayFigure(template_data)
    try:
        for fa, qc_tsv, png in progress(list(zip(registered, qc_tsvs, pngs)), desc="QC figures"):
            data, _ = load_nifti(fa, ndim=3)
            if data.shape != template_data.shape:
                raise InputError(
                    f"{fa}: shape {data.shape} is not the template grid {template_data.shape} of {template}"
                )
            figure.save(data, png, title=_qc_title(qc_tsv))
    finally:
        figure.close()
    log.info("drew %d registration QC figures", len(pngs))
