"""Rule export_bids: a synthetic cohort written as a BIDS dataset with a two-group label, for testing the BIDS path.

The simulation plants its effects on the subjects it calls male; the export calls them ``patient`` (the others
``control``) in a ``group`` column, and draws a new ``sex`` column balanced within each group and unrelated to the
effect (configs/bids-export.yaml also sets no brain-size difference and the same age distribution for both). Written
under ``results/bids/``:

- ``rawdata/``: dataset_description.json, participants.tsv + .json, README, ``sub-*/dwi/sub-*_dwi.{nii.gz,bval,bvec,
  json}`` - raw BIDS;
- ``rawdata/derivatives/qsiprep/``: the same DWI laid out as QSIPrep's derivatives
  (``*_space-T1w_desc-preproc_dwi.*`` and ``*_space-T1w_desc-brain_mask.nii.gz``);
- ``template/`` (FA template, atlas, atlas_labels.tsv) and ``planted_regions.tsv`` (effect ``group``): what a BIDS
  run is pointed at with config keys template.* and truth.planted.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dmriscope.io import InputError, progress

log = logging.getLogger(__name__)

BIDS_VERSION = "1.9.0"
GROUPS = {"M": "patient", "F": "control"}
QSIPREP_ENTITIES = "space-T1w_desc-preproc_dwi"
QSIPREP_MASK = "space-T1w_desc-brain_mask"


def relabel(participants: pd.DataFrame, seed: int) -> pd.DataFrame:
    """participant_id, group (patient = the simulation's effect carriers), sex (balanced within each group, seeded,
    independent of the effect), age."""
    rng = np.random.default_rng(seed)
    frame = participants.sort_values("subject").reset_index(drop=True)
    out = pd.DataFrame({"participant_id": "sub-" + frame["subject"], "group": frame["sex"].map(GROUPS)})
    if out["group"].isna().any():
        raise InputError(f"subject {frame['subject'][out['group'].isna()].iloc[0]}: sex is neither M nor F")
    out["sex"] = ""
    for _, rows in out.groupby("group"):
        order = rng.permutation(rows.index.to_numpy())
        out.loc[order, "sex"] = np.resize(np.array(["M", "F"])[rng.permutation(2)], order.size)
    out["age"] = frame["age"]
    return out


def _write_json(path: Path, content: dict) -> None:
    path.write_text(json.dumps(content, indent=2) + "\n")


def dataset_description(root: Path, derivative: bool) -> None:
    content = {
        "Name": "dmriscope synthetic cohort" + (" (QSIPrep layout)" if derivative else ""),
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative" if derivative else "raw",
        "GeneratedBy": [{"Name": "dmriscope", "Description": "phantom simulated at HCP's diffusion scheme"}],
    }
    _write_json(root / "dataset_description.json", content)


def participants_files(root: Path, table: pd.DataFrame) -> None:
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    _write_json(
        root / "participants.json",
        {
            "group": {"Description": "study group", "Levels": {"patient": "patient", "control": "control"}},
            "sex": {"Description": "sex", "Levels": {"M": "male", "F": "female"}},
            "age": {"Description": "age", "Units": "year"},
        },
    )
    (root / "README").write_text(
        "Synthetic diffusion MRI cohort simulated by dmriscope (a phantom at HCP's 3-shell scheme). The group\n"
        "column carries planted white-matter effects; sex is balanced within groups and unrelated to them.\n"
    )


def _hardlink_or_copy(source: Path, target: Path) -> None:
    """A hard link (the same bytes, no second copy on disk: 12 GB for the default cohort), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def copy_subject(subject: str, files: dict[str, str], raw: Path, derivatives: Path) -> None:
    """One subject's DWI, gradients and sidecar in the raw layout, and DWI + mask in the QSIPrep layout (its DWI
    hard-linked to the raw one)."""
    sidecar = {"PhaseEncodingDirection": "j-", "Description": "synthetic; see dataset README"}
    for root, stem in ((raw, f"sub-{subject}_dwi"), (derivatives, f"sub-{subject}_{QSIPREP_ENTITIES}")):
        folder = root / f"sub-{subject}" / "dwi"
        folder.mkdir(parents=True, exist_ok=True)
        if root is raw:
            shutil.copyfile(files["dwi"], folder / f"{stem}.nii.gz")
        else:
            _hardlink_or_copy(raw / f"sub-{subject}" / "dwi" / f"sub-{subject}_dwi.nii.gz", folder / f"{stem}.nii.gz")
        shutil.copyfile(files["bval"], folder / f"{stem}.bval")
        shutil.copyfile(files["bvec"], folder / f"{stem}.bvec")
        _write_json(folder / f"{stem}.json", sidecar)
    mask = derivatives / f"sub-{subject}" / "dwi" / f"sub-{subject}_{QSIPREP_MASK}.nii.gz"
    shutil.copyfile(files["mask"], mask)


def export_template(planted: str, template: dict[str, str], out_planted: str, out_template: str) -> None:
    """The phantom template and atlas (labels as TSV) and the planted regions with effect sex renamed group."""
    folder = Path(out_template)
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in template.items():
        shutil.copyfile(path, folder / name)
    table = pd.read_csv(planted, sep="\t")
    table["effect"] = table["effect"].replace({"sex": "group"})
    table.to_csv(out_planted, sep="\t", index=False)


def export_bids(
    *,
    participants: str,
    subjects: Sequence[str],
    dwi: Sequence[str],
    bval: Sequence[str],
    bvec: Sequence[str],
    masks: Sequence[str],
    planted: str,
    template: dict[str, str],
    out_dataset: str,
    out_planted: str,
    out_template: str,
    seed: int = 0,
) -> pd.DataFrame:
    """Rule export_bids: write the raw dataset (with its QSIPrep derivatives inside) and the template and truth."""
    if not len(subjects) == len(dwi) == len(bval) == len(bvec) == len(masks):
        raise InputError(f"export_bids: {len(subjects)} subjects but {len(dwi)} DWI files")
    raw = Path(out_dataset)
    derivatives = raw / "derivatives" / "qsiprep"
    derivatives.mkdir(parents=True, exist_ok=True)
    table = relabel(pd.read_csv(participants, sep="\t", dtype={"subject": str}), seed)
    table = table[table["participant_id"].isin([f"sub-{s}" for s in subjects])]
    for root, derivative in ((raw, False), (derivatives, True)):
        dataset_description(root, derivative)
    participants_files(raw, table)
    for subject, *files in progress(list(zip(subjects, dwi, bval, bvec, masks)), desc="export"):
        copy_subject(subject, dict(zip(("dwi", "bval", "bvec", "mask"), files)), raw, derivatives)
    export_template(planted, template, out_planted, out_template)
    counts = table.groupby(["group", "sex"]).size().to_dict()
    log.info("BIDS dataset %s: %d subjects, group x sex %s", raw, len(table), counts)
    return table
