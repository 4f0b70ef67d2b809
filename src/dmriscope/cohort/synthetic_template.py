"""The synthetic cohort's two whole-cohort rules: the template files (prepare_template) and participants.tsv
(build_participants). They write tables, so they use pandas; the per-subject simulation
(`dmriscope.cohort.synthetic`, one job per subject) does not import it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib import resources

import numpy as np
import pandas as pd

from dmriscope.cohort import microstructure as ms
from dmriscope.cohort import phantom as ph
from dmriscope.cohort.participants import draw_demographics, read_participants, write_participants
from dmriscope.cohort.synthetic import TEXTURE_SMOOTHNESS_MM, template_fa
from dmriscope.io import atomic_path, save_nifti

log = logging.getLogger(__name__)


def region_names() -> pd.DataFrame:
    """The 48 JHU-ICBM labels: columns index (1..48), name."""
    path = resources.files("dmriscope") / "data" / "jhu_labels.tsv"
    with resources.as_file(path) as p:
        return pd.read_csv(p, sep="\t")


def planted_table(synthetic: dict) -> pd.DataFrame:
    """Planted effects: region, name, effect (sex|age), size (subject SDs), delta_f (intra-axonal fraction units)."""
    names = region_names().set_index("index")["name"]
    rows = [
        {"region": e["region"], "name": names[e["region"]], "effect": effect, "size": e["size"],
         "delta_f": e["size"] * synthetic["subject_sd"]}
        for effect in ("sex", "age") for e in synthetic[f"{effect}_effects"]
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["region", "name", "effect", "size", "delta_f"])


def prepare_template(
    out_fa: str, out_atlas: str, out_labels: str, out_wm_mask: str, out_tissue: str, out_texture: str,
    out_planted: str, synthetic: dict, seed: int,
) -> None:  # fmt: skip
    """Write the phantom template: FA, atlas (int16), labels TSV, WM mask, tissue codes, texture, planted effects."""
    shape = tuple(synthetic["template_shape"])
    phantom = ph.build_phantom(shape, synthetic["voxel_mm"])
    texture = ph.texture_field(shape, synthetic["voxel_mm"], TEXTURE_SMOOTHNESS_MM, seed)
    save_nifti(template_fa(phantom, texture, synthetic["texture_sd"]), phantom.affine, out_fa)
    save_nifti(phantom.atlas, phantom.affine, out_atlas, dtype=np.int16)
    save_nifti(phantom.tissue == ms.WM, phantom.affine, out_wm_mask, dtype=np.uint8)
    save_nifti(phantom.tissue, phantom.affine, out_tissue, dtype=np.int16)
    save_nifti(texture, phantom.affine, out_texture)
    planted = planted_table(synthetic)
    for frame, path in ((region_names(), out_labels), (planted, out_planted)):
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, sep="\t", index=False)
    log.info("template %s at %.1f mm written; planted effects:\n%s", shape, synthetic["voxel_mm"], planted)


def build_participants(subjects: Sequence[str], cohort: dict, out: str) -> None:
    """participants.tsv: the config's `cohort.participants` table (normalised, rows validated later per subject) or
    sex and age drawn like the paper's Table 1 from `cohort.seed`."""
    if cohort["participants"]:
        frame = read_participants(cohort["participants"])
        log.info("participants: %d rows from %s", len(frame), cohort["participants"])
    else:
        frame = draw_demographics(subjects, cohort["seed"], cohort["male_fraction"], cohort["age_bin_fractions"])
        log.info("participants: drew %d subjects, %d male", len(frame), (frame["sex"] == "M").sum())
    write_participants(frame, out)
