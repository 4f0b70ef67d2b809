"""The real-data template: FMRIB58 FA and the JHU-ICBM white-matter labels, from $FSLDIR or given paths.

Outputs (results/template/): ``template_FA.nii.gz`` (float32, FA in 0..1; FMRIB58 is stored as FA x 10000 and is
rescaled), ``atlas.nii.gz`` (int16 labels 0..48 on the template grid), ``atlas_labels.tsv`` (columns index, name;
the 48 regions) and ``wm_mask.nii.gz`` (uint8, atlas > 0: the voxels of the 48 regions, so every occluded region
lies inside the mask).

FSL's ``JHU-labels.xml`` lists ``<label index="0">Unclassified</label>`` then ``index="1"`` .. ``"48"``, where the
index is the voxel value (fslpy's `AtlasDescription` reads label atlases this way). Files that follow the older
0-based convention (no Unclassified entry, indices 0..47 for values 1..48) are recognised and shifted by one.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dmriscope.io import InputError, atomic_path, load_nifti, save_nifti

log = logging.getLogger(__name__)

FSL_TEMPLATE = Path("data/standard/FMRIB58_FA_1mm.nii.gz")
FSL_ATLAS = Path("data/atlases/JHU/JHU-ICBM-labels-1mm.nii.gz")
FSL_LABELS = Path("data/atlases/JHU-labels.xml")
N_REGIONS = 48
FA_SCALE = 10000.0  # FMRIB58_FA is stored as integer FA x 10000
BACKGROUND_NAMES = frozenset({"unclassified", "background", "unknown"})
TRACTSEG = "tractseg"  # template.fa keyword: TractSeg's MNI FA template (Apache-2.0), for users without FSL
TRACTSEG_FILE = "resources/MNI_FA_template.nii.gz"
# FSL's MNI152 1 mm grid (FMRIB58_FA_1mm, JHU-ICBM-labels-1mm): 182 x 218 x 182, radiological
MNI_1MM_SHAPE = (182, 218, 182)
MNI_1MM_AFFINE = np.array([[-1.0, 0, 0, 90], [0, 1, 0, -126], [0, 0, 1, -72], [0, 0, 0, 1]])


@dataclass(frozen=True)
class TemplateSources:
    """The three inputs: FA template, label image and label XML (absolute or relative paths)."""

    fa: Path
    atlas: Path
    labels: Path


def resolve_sources(template: Mapping[str, Any], backend: str, fsldir: str | None) -> TemplateSources:
    """Paths from config (``template.fa/atlas/atlas_labels``), each defaulting to its file under `fsldir`.

    The fsl registration backend needs FSL itself, so it requires `fsldir` even when all paths are given.
    """
    if backend == "fsl" and not fsldir:
        raise InputError(
            "config key 'registration.backend': 'fsl' needs FSL, but $FSLDIR is not set (install FSL and set FSLDIR, "
            "or use backend 'ants')"
        )
    paths = {}
    for key, default in (("fa", FSL_TEMPLATE), ("atlas", FSL_ATLAS), ("atlas_labels", FSL_LABELS)):
        if key == "fa" and template.get(key) == TRACTSEG:
            paths[key] = tractseg_template()
        elif template.get(key):
            paths[key] = Path(template[key])
        elif fsldir:
            paths[key] = Path(fsldir) / default
        else:
            raise InputError(f"config key 'template.{key}': not given and $FSLDIR is not set to supply {default}")
    for key, path in paths.items():
        if not path.is_file():
            raise InputError(f"{path}: not found (config key 'template.{key}' or $FSLDIR)")
    return TemplateSources(fa=paths["fa"], atlas=paths["atlas"], labels=paths["atlas_labels"])


def tractseg_template() -> Path:
    """TractSeg's MNI FA template (1.25 mm, 145 x 174 x 145) from the installed TractSeg package (not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("tractseg")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "config key 'template.fa': 'tractseg' needs the TractSeg package (pip install --no-deps TractSeg==2.10)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / TRACTSEG_FILE


def on_mni_1mm(fa: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """An MNI-space FA image resampled (trilinear, nibabel) onto FSL's 1 mm MNI152 grid."""
    import nibabel as nib
    from nibabel.processing import resample_from_to

    image = resample_from_to(nib.Nifti1Image(fa, affine), (MNI_1MM_SHAPE, MNI_1MM_AFFINE), order=1)
    return np.asarray(image.dataobj, dtype=np.float32)


def read_labels_table(path: Path) -> pd.DataFrame:
    """Region value and name from a TSV (or CSV) with columns index and name; background (0) rows dropped."""
    frame = pd.read_csv(path, sep="," if path.suffix == ".csv" else "\t", dtype={"name": str})
    if not {"index", "name"} <= set(frame.columns):
        raise InputError(f"{path}: atlas labels table needs columns index and name, has {list(frame.columns)}")
    try:
        frame["index"] = frame["index"].astype(int)
    except ValueError:
        raise InputError(f"{path}: atlas label indices are not integers") from None
    return frame.loc[frame["index"] != 0, ["index", "name"]]


def read_atlas_labels(path: str | Path) -> pd.DataFrame:
    """Region value and name of every label in an FSL atlas XML (or a TSV with columns index, name), background
    excluded; columns index, name.

    Handles the current XML convention (index = voxel value, label 0 'Unclassified') and the old 0-based one.
    """
    path = Path(path)
    if path.suffix in (".tsv", ".csv"):
        return _checked(read_labels_table(path), path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise InputError(f"{path}: cannot parse the atlas XML ({exc})") from None
    entries = []
    for label in root.iter("label"):
        try:
            index = int(label.attrib["index"])
        except (KeyError, ValueError):
            raise InputError(f"{path}: a <label> has no integer index attribute") from None
        entries.append((index, (label.text or "").strip()))
    if not entries:
        raise InputError(f"{path}: no <label> entries")
    atlas_type = (root.findtext("header/type") or "label").strip().lower()
    if atlas_type != "label":
        raise InputError(f"{path}: atlas type is {atlas_type!r}, expected a Label atlas")
    has_background = any(i == 0 and name.lower() in BACKGROUND_NAMES for i, name in entries)
    if not has_background and min(i for i, _ in entries) == 0:
        log.info("%s: 0-based indices without a background entry; region value = index + 1", path)
        entries = [(i + 1, name) for i, name in entries]
    return _checked(pd.DataFrame([e for e in entries if e[0] != 0], columns=["index", "name"]), path)


def _checked(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    if frame.empty:
        raise InputError(f"{path}: no region labels")
    if (frame["index"] < 0).any():
        raise InputError(f"{path}: negative region index {int(frame['index'].min())}")
    if frame["index"].duplicated().any():
        raise InputError(f"{path}: region {frame['index'][frame['index'].duplicated()].iloc[0]} is listed twice")
    return frame.sort_values("index", ignore_index=True)


def fa_to_unit(fa: np.ndarray, path: Path) -> np.ndarray:
    """FA in 0..1: FMRIB58's integer FA x 10000 is divided by 10000; negative values (interpolation) become 0."""
    if (negative := int((fa < 0).sum())) > 0:
        log.warning("%s: %d negative voxels set to 0", path, negative)
        fa = np.clip(fa, 0, None)
    peak = float(fa.max())
    if peak <= 1.0 + 1e-6:
        return fa.astype(np.float32)
    if peak <= FA_SCALE:
        log.info("%s: maximum %.0f, treated as FA x %.0f", path, peak, FA_SCALE)
        return (fa / FA_SCALE).astype(np.float32)
    raise InputError(f"{path}: FA template maximum {peak:g} is neither FA (<= 1) nor FA x 10000")


def check_atlas(atlas: np.ndarray, labels: pd.DataFrame, atlas_path: Path, labels_path: Path) -> np.ndarray:
    """Integer labels, exactly the regions named in the labels file (JHU-ICBM: 1..48), each with voxels; returns
    the atlas as int16 (D, H, W)."""
    if not np.allclose(atlas, np.round(atlas)):
        raise InputError(f"{atlas_path}: atlas values are not integers")
    atlas = np.round(atlas).astype(np.int16)
    expected = labels["index"].tolist()
    if len(expected) != N_REGIONS:
        log.info("%s: %d regions (JHU-ICBM has %d)", labels_path, len(expected), N_REGIONS)
    present = set(np.unique(atlas).tolist()) - {0}
    unknown = sorted(present - set(expected))
    if unknown:
        raise InputError(f"{atlas_path}: label value(s) {unknown[:5]} not in {labels_path.name}")
    absent = sorted(set(expected) - present)
    if absent:
        raise InputError(f"{atlas_path}: region(s) {absent[:5]} have no voxels")
    return atlas


def prepare_template(
    sources: TemplateSources, fa_out: str | Path, atlas_out: str | Path, labels_out: str | Path, wm_mask_out: str | Path
) -> None:
    """Check the FA template, atlas and labels against each other and write the four template outputs."""
    fa, fa_affine = load_nifti(sources.fa, ndim=3)
    atlas, atlas_affine = load_nifti(sources.atlas, ndim=3)
    if sources.fa.name == Path(TRACTSEG_FILE).name and fa.shape != MNI_1MM_SHAPE:
        log.info("%s: TractSeg's 1.25 mm MNI FA template, resampled to the 1 mm MNI152 grid", sources.fa)
        fa, fa_affine = on_mni_1mm(fa, fa_affine), MNI_1MM_AFFINE
    if fa.shape != atlas.shape or not np.allclose(fa_affine, atlas_affine, atol=1e-3):
        raise InputError(
            f"{sources.atlas}: grid {atlas.shape} does not match the FA template {sources.fa} {fa.shape} "
            "(shape and affine must agree)"
        )
    labels = read_atlas_labels(sources.labels)
    atlas = check_atlas(atlas, labels, sources.atlas, sources.labels)
    fa = fa_to_unit(fa, sources.fa)
    wm_mask = atlas > 0
    save_nifti(fa, fa_affine, fa_out)
    save_nifti(atlas, fa_affine, atlas_out, dtype=np.int16)
    save_nifti(wm_mask, fa_affine, wm_mask_out, dtype=np.uint8)
    with atomic_path(labels_out) as tmp:
        labels.to_csv(tmp, sep="\t", index=False)
    log.info(
        "template %s %s, %d atlas regions, WM mask %d voxels (mean template FA there %.3f)",
        sources.fa.name,
        fa.shape,
        len(labels),
        int(wm_mask.sum()),
        float(fa[wm_mask].mean()),
    )


def prepare_template_from_config(
    template: Mapping[str, Any],
    backend: str,
    fa_out: str | Path,
    atlas_out: str | Path,
    labels_out: str | Path,
    wm_mask_out: str | Path,
    fsldir: str | None = None,
) -> TemplateSources:
    """`resolve_sources` with $FSLDIR from the environment (unless given), then `prepare_template`."""
    sources = resolve_sources(template, backend, fsldir if fsldir is not None else os.environ.get("FSLDIR"))
    log.info("template sources: FA %s, atlas %s, labels %s", sources.fa, sources.atlas, sources.labels)
    prepare_template(sources, fa_out, atlas_out, labels_out, wm_mask_out)
    return sources
