"""cohort.source bids: a BIDS dataset of raw DWI, or a BIDS derivatives dataset of preprocessed DWI (QSIPrep).

The dataset is indexed with bids2table (benchmarks/bids_index.py times it against pybids at DAG build; README,
"Run it on your own data"). When the DAG is built, `bids_cohort` reads the participants table and lists the
subjects to process (label value one of the two, not in ``bids.exclude``), and `dwi_candidates` lists each
subject's DWI files matching the config's entities. Each subject's own job (`import_subject`) then picks its one
DWI series and its gradient files, or stops with one line naming the subject and the files it found, so that with
``--keep-going`` the other subjects go on.

Raw BIDS DWI is not motion- or eddy-corrected: dmriscope fits it as it is and says so in the job's log;
preprocess with QSIPrep (``bids.desc: preproc``) for real analyses. Without a dataset mask, the brain mask is dipy's
``median_otsu`` of the mean b=0 volume.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dmriscope.io import InputError, atomic_path
from dmriscope.label import Label

log = logging.getLogger(__name__)

ENTITIES = {"session": "ses", "acquisition": "acq", "run": "run", "space": "space"}
RAW_WARNING = (
    "raw BIDS DWI: no motion or eddy-current correction is done by dmriscope; preprocess with QSIPrep and point "
    "bids.root at its derivatives (bids.desc: preproc) for a real analysis"
)


def bids_root(bids: Mapping[str, Any]) -> Path:
    """The dataset root of config ``bids.root``; InputError naming the key when it is missing or not a dataset."""
    if not bids.get("root"):
        raise InputError("config key 'bids.root': not set (the BIDS dataset for cohort.source bids)")
    root = Path(bids["root"])
    if not (root / "dataset_description.json").is_file():
        raise InputError(f"config key 'bids.root': {root} has no dataset_description.json (not a BIDS dataset)")
    return root


def participants_path(bids: Mapping[str, Any]) -> Path:
    """Config ``bids.participants``, else the dataset's participants.tsv, else - for a derivatives dataset kept
    in ``<raw>/derivatives/<pipeline>/`` as BIDS recommends - the raw dataset's."""
    if bids.get("participants"):
        return Path(bids["participants"])
    root = bids_root(bids)
    if not (root / "participants.tsv").is_file() and root.parent.name == "derivatives":
        return root.parent.parent / "participants.tsv"
    return root / "participants.tsv"


def read_bids_participants(path: Path, label: Label) -> pd.DataFrame:
    """participants.tsv as strings with ``subject`` (participant_id without ``sub-``); InputError without the label's
    column or participant_id."""
    if not path.is_file():
        raise InputError(f"{path}: participants table not found (config key 'bids.participants')")
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    for column in ("participant_id", label.column):
        if column not in frame.columns:
            raise InputError(f"{path}: no column {column!r} (config key 'label.column' names the label's column)")
    frame.insert(0, "subject", frame["participant_id"].str.strip().str.removeprefix("sub-"))
    bad = [s for s in frame["subject"] if not s.isalnum()]
    if bad:
        raise InputError(f"{path}: participant_id sub-{bad[0]} is not a BIDS label (letters and digits only)")
    if frame["subject"].duplicated().any():
        raise InputError(f"{path}: participant sub-{frame['subject'][frame['subject'].duplicated()].iloc[0]} twice")
    return frame


def bids_cohort(bids: Mapping[str, Any], label: Label) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, excluded) rows of the participants table: excluded are the subjects of ``bids.exclude`` and those
    whose label value is neither of the two (columns subject, reason)."""
    path = participants_path(bids)
    frame = read_bids_participants(path, label)
    values = frame[label.column].map(label.normalise)
    excluded_ids = {s.strip().removeprefix("sub-") for s in bids.get("exclude", [])}
    reasons = pd.Series("", index=frame.index)
    reasons[values.isna()] = [
        f"{label.column} {v!r} is neither {label.positive} nor {label.negative}"
        for v in frame[label.column][values.isna()]
    ]
    reasons[frame["subject"].isin(excluded_ids)] = "listed in config key 'bids.exclude'"
    kept = frame[reasons == ""].assign(**{label.column: values[reasons == ""]})
    excluded = pd.DataFrame({"subject": frame["subject"][reasons != ""], "reason": reasons[reasons != ""]})
    return kept.reset_index(drop=True), excluded.reset_index(drop=True)


def index_dwi(root: Path) -> pd.DataFrame:
    """Every file of the ``dwi`` datatype under ``root`` (bids2table), with its entities and absolute path."""
    from bids2table import index_dataset

    table = index_dataset(root).to_pandas()
    if table.empty:
        return pd.DataFrame(columns=["sub", "ses", "acq", "run", "space", "desc", "suffix", "ext", "file"])
    table = table[table["datatype"] == "dwi"].copy()
    table["file"] = [str(Path(r) / p) for r, p in zip(table["root"].astype(str), table["path"])]
    return table[["sub", "ses", "acq", "run", "space", "desc", "suffix", "ext", "file"]].reset_index(drop=True)


def _matches(table: pd.DataFrame, bids: Mapping[str, Any]) -> pd.Series:
    """Rows whose session, acquisition, run and space are the config's (where it names one)."""
    keep = pd.Series(True, index=table.index)
    for key, entity in ENTITIES.items():
        if bids.get(key) is None:
            continue
        if key == "run":  # an index entity: run-01 is run 1
            keep &= pd.to_numeric(table[entity], errors="coerce") == int(bids[key])
        else:
            keep &= table[entity].astype(str) == str(bids[key])
    return keep


def dwi_candidates(bids: Mapping[str, Any], subjects: Sequence[str]) -> dict[str, dict[str, list[str]]]:
    """Per subject, the files a subject's job chooses from: ``dwi`` (the DWI series matching the config's desc and
    entities), ``bval`` / ``bvec`` (beside them) and ``mask`` (desc-brain masks of the same entities)."""
    table = index_dwi(bids_root(bids))
    table = table[_matches(table, bids)]
    desc = bids.get("desc")
    is_desc = table["desc"].isna() if desc is None else table["desc"].astype(str) == desc
    table = table.assign(kind=None)
    image = table["ext"].isin([".nii.gz", ".nii"])
    series = (table["suffix"] == "dwi") & is_desc
    table.loc[series & image, "kind"] = "dwi"
    table.loc[series & (table["ext"] == ".bval"), "kind"] = "bval"
    table.loc[series & (table["ext"] == ".bvec"), "kind"] = "bvec"
    table.loc[(table["suffix"] == "mask") & (table["desc"].astype(str) == "brain") & image, "kind"] = "mask"
    found = {key: sorted(rows["file"]) for key, rows in table.dropna(subset=["kind"]).groupby(["sub", "kind"])}
    return {subject: {k: found.get((subject, k), []) for k in ("dwi", "bval", "bvec", "mask")} for subject in subjects}


def _stem(path: str) -> str:
    name = Path(path).name
    return name[: -len(".nii.gz")] if name.endswith(".nii.gz") else Path(name).stem


def _entity_key(path: str) -> str:
    """A file name without its desc entity and suffix: the key that pairs a DWI series with its brain mask."""
    parts = _stem(path).split("_")[:-1]
    return "_".join(p for p in parts if not p.startswith("desc-"))


def choose_files(subject: str, candidates: Mapping[str, Sequence[str]], mask: str) -> dict[str, str | None]:
    """The subject's one DWI series, its .bval / .bvec and (``mask`` dataset) its brain mask; InputError naming the
    subject and the files found otherwise."""
    series = list(candidates["dwi"])
    found = ", ".join(Path(f).name for kind in ("dwi", "bval", "bvec", "mask") for f in candidates[kind]) or "none"
    if not series:
        raise InputError(f"subject {subject}: no DWI matching config section 'bids' (files found: {found})")
    if len(series) > 1:
        names = ", ".join(Path(f).name for f in series)
        raise InputError(
            f"subject {subject}: {len(series)} DWI series match ({names}); pick one with bids.session, "
            "bids.acquisition or bids.run"
        )
    chosen = {"dwi": series[0]}
    for kind in ("bval", "bvec"):
        twin = [f for f in candidates[kind] if _stem(f) == _stem(series[0])]
        if not twin:
            raise InputError(f"subject {subject}: {Path(series[0]).name} has no .{kind} (files found: {found})")
        chosen[kind] = twin[0]
    chosen["mask"] = None
    if mask == "dataset":
        twin = [f for f in candidates["mask"] if _entity_key(f) == _entity_key(series[0])]
        if not twin:
            raise InputError(
                f"subject {subject}: no desc-brain mask for {Path(series[0]).name} (files found: {found}); "
                "set bids.mask: median_otsu to compute one"
            )
        chosen["mask"] = twin[0]
    return chosen


def mask_mode(bids: Mapping[str, Any]) -> str:
    """``dataset`` or ``median_otsu``: config ``bids.mask``, where ``auto`` is dataset for derivatives (desc set)."""
    mode = bids.get("mask", "auto")
    return ("dataset" if bids.get("desc") else "median_otsu") if mode == "auto" else mode


def link_or_copy(source: str, target: str | Path) -> None:
    """``target`` (a .nii.gz) as a symlink to ``source`` when it is gzipped, else a gzipped copy; atomic."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    if source.endswith(".gz"):
        os.symlink(os.path.abspath(source), tmp)
    else:
        with open(source, "rb") as src, gzip.open(tmp, "wb", compresslevel=1) as dst:
            shutil.copyfileobj(src, dst)
    os.replace(tmp, target)


def median_otsu_mask(dwi: str, bval: str, out: str | Path) -> int:
    """dipy's median_otsu brain mask of the mean b<=50 volume; returns its voxels. The setting of dipy's DWI
    brain-extraction example (median radius 2 voxels at 2 mm, one pass), the radius kept near 4 mm at other voxel
    sizes: its default (radius 4, 4 passes) kept 42% of the phantom's brain at 6 mm, this 98%."""
    import nibabel as nib
    import numpy as np
    from dipy.segment.mask import median_otsu

    from dmriscope.io import save_nifti

    image = nib.load(dwi)
    bvals = np.loadtxt(bval, ndmin=1)
    volumes = np.flatnonzero(bvals <= 50)
    if volumes.size == 0:
        raise InputError(f"{bval}: no b=0 volume to compute a brain mask from")
    mean_b0 = sum(np.asarray(image.dataobj[..., int(v)], dtype=np.float64) for v in volumes) / volumes.size
    radius = max(1, round(4.0 / float(min(image.header.get_zooms()[:3]))))
    _, mask = median_otsu(mean_b0, median_radius=radius, numpass=1)
    save_nifti(mask.astype(np.uint8), image.affine, out, dtype=np.uint8)
    return int(mask.sum())


def import_subject(
    *, subject: str, candidates: Mapping[str, Sequence[str]], mask: str, out_dwi: str, out_bval: str,
    out_bvec: str, out_mask: str, out_source: str,
) -> dict:  # fmt: skip
    """Rule import_bids_subject: the subject's DWI (linked), gradients and brain mask as dmriscope's raw inputs,
    and a JSON of the BIDS files they came from."""
    chosen = choose_files(subject, candidates, mask)
    if mask == "median_otsu" and "desc-" not in Path(chosen["dwi"]).name:
        log.warning("subject %s: %s", subject, RAW_WARNING)
    shutil.copyfile(chosen["bval"], out_bval)
    shutil.copyfile(chosen["bvec"], out_bvec)
    if chosen["mask"] is not None:
        link_or_copy(chosen["mask"], out_mask)
        log.info("subject %s: mask %s", subject, chosen["mask"])
    else:
        voxels = median_otsu_mask(chosen["dwi"], chosen["bval"], out_mask)
        log.info("subject %s: median_otsu mask, %d voxels", subject, voxels)
    link_or_copy(chosen["dwi"], out_dwi)
    with atomic_path(out_source) as tmp:
        Path(tmp).write_text(json.dumps({"subject": subject, "mask": mask, **chosen}, indent=1) + "\n")
    log.info("subject %s: DWI %s", subject, chosen["dwi"])
    return chosen


def build_bids_participants(
    *,
    bids: Mapping[str, Any],
    participants_out: str,
    excluded_out: str,
    label: Mapping | None = None,
    age_bins: Sequence[Sequence[int]] | None = None,
    stratify: Sequence[str] = ("age_bin",),
) -> int:
    """Rule build_participants (bids): the dataset's participants with the label's value, age and age bin, and the
    excluded subjects with the reason (one warning line each); returns the number of participants."""
    from dmriscope.cohort.participants import AGE_BIN_EDGES, validated, with_columns, write_participants

    group = Label.from_config(label)
    kept, excluded = bids_cohort(bids, group)
    for row in excluded.itertuples():
        log.warning("subject %s left out: %s", row.subject, row.reason)
    table = validated(with_columns(kept, group), participants_path(bids), group, age_bins or AGE_BIN_EDGES, stratify)
    with atomic_path(excluded_out) as tmp:
        excluded.to_csv(tmp, sep="\t", index=False)
    write_participants(table, participants_out, group, stratify)
    log.info("%d participants; %s: %s", len(table), group.column, table[group.column].value_counts().to_dict())
    return len(table)
