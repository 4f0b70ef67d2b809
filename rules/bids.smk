# cohort.source bids: participants and each subject's DWI, gradients and brain mask from a BIDS dataset (raw) or a
# BIDS derivatives dataset (QSIPrep), indexed with bids2table when the DAG is built (src/dmriscope/cohort/bids.py).
from dmriscope.cohort.bids import dwi_candidates, mask_mode, participants_path
from dmriscope.io import InputError

try:
    BIDS_FILES = dwi_candidates(config["bids"], SUBJECTS)
    BIDS_PARTICIPANTS = str(participants_path(config["bids"]))
except InputError as exc:
    sys.exit(f"dmriscope: {exc}")


rule build_participants:
    input:
        table=BIDS_PARTICIPANTS,
    output:
        participants="results/cohort/participants.tsv",
        excluded="results/cohort/excluded.tsv",
    log:
        "logs/build_participants/build_participants.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        bids=config["bids"],
        label=config["label"],
        age_bins=config["cohort"]["age_bins"],
        stratify=config["split"]["stratify"],
    script:
        "../workflow_scripts/build_participants_bids.py"


rule import_bids_subject:
    input:
        # the subject's candidate files: its job picks one series or names what it found
        lambda wildcards: [
            f for kind in BIDS_FILES[wildcards.subject].values() for f in kind
        ],
    output:
        dwi=temp("results/raw/sub-{subject}/dwi.nii.gz"),
        bval="results/raw/sub-{subject}/dwi.bval",
        bvec="results/raw/sub-{subject}/dwi.bvec",
        mask="results/raw/sub-{subject}/brain_mask.nii.gz",
        source="results/raw/sub-{subject}/source.json",
    log:
        "logs/import_bids_subject/sub-{subject}.log",
    benchmark:
        "benchmarks-out/import_bids_subject/sub-{subject}.tsv"
    conda:
        "../envs/dmriscope.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        candidates=lambda wildcards: BIDS_FILES[wildcards.subject],
        mask=mask_mode(config["bids"]),
    script:
        "../workflow_scripts/import_bids_subject.py"
