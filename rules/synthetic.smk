# The synthetic cohort: a phantom template + atlas, demographics, and per-subject DWI at HCP's scheme.


rule prepare_template:
    output:
        fa="results/template/template_FA.nii.gz",
        atlas="results/template/atlas.nii.gz",
        labels="results/template/atlas_labels.tsv",
        wm_mask="results/template/wm_mask.nii.gz",
        tissue="results/template/tissue.nii.gz",
        texture="results/truth/texture.nii.gz",
        planted="results/truth/planted_regions.tsv",
    log:
        "logs/prepare_template/prepare_template.log",
    conda:
        "../envs/dmriscope.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        synthetic=config["synthetic"],
        seed=config["cohort"]["seed"],
    script:
        "../workflow_scripts/prepare_template.py"


rule build_participants:
    input:
        table=(
            [config["cohort"]["participants"]]
            if config["cohort"]["participants"]
            else []
        ),
    output:
        participants="results/cohort/participants.tsv",
    log:
        "logs/build_participants/build_participants.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        subjects=SUBJECTS,
        cohort=config["cohort"],
    script:
        "../workflow_scripts/build_participants.py"


rule synthesize_subject:
    input:
        participants="results/cohort/participants.tsv",
        atlas="results/template/atlas.nii.gz",
        tissue="results/template/tissue.nii.gz",
        texture="results/truth/texture.nii.gz",
    output:
        dwi=temp("results/raw/sub-{subject}/dwi.nii.gz"),
        bval="results/raw/sub-{subject}/dwi.bval",
        bvec="results/raw/sub-{subject}/dwi.bvec",
        mask="results/raw/sub-{subject}/brain_mask.nii.gz",
        truth=expand("results/truth/sub-{{subject}}/{metric}.nii.gz", metric=METRICS),
        params="results/truth/sub-{subject}/params.json",
    log:
        "logs/synthesize_subject/sub-{subject}.log",
    benchmark:
        "benchmarks-out/synthesize_subject/sub-{subject}.tsv"
    conda:
        "../envs/dmriscope.yaml"
    threads: 1
    resources:
        mem_mb=synthesize_mem_mb,
        runtime=10,
    params:
        synthetic=config["synthetic"],
        seed=config["cohort"]["seed"],
        dki=config["dki"],
    script:
        "../workflow_scripts/synthesize_subject.py"


# Not part of `rule all`: `snakemake export_bids --configfile configs/bids-export.yaml` writes the cohort as a BIDS
# dataset (and its QSIPrep-layout derivatives) with a patient/control group, for the BIDS path (README).
rule export_bids:
    input:
        participants="results/cohort/participants.tsv",
        dwi=expand("results/raw/sub-{subject}/dwi.nii.gz", subject=SUBJECTS),
        bval=expand("results/raw/sub-{subject}/dwi.bval", subject=SUBJECTS),
        bvec=expand("results/raw/sub-{subject}/dwi.bvec", subject=SUBJECTS),
        masks=expand("results/raw/sub-{subject}/brain_mask.nii.gz", subject=SUBJECTS),
        planted="results/truth/planted_regions.tsv",
        fa="results/template/template_FA.nii.gz",
        atlas="results/template/atlas.nii.gz",
        labels="results/template/atlas_labels.tsv",
    output:
        dataset=directory("results/bids/rawdata"),
        planted="results/bids/planted_regions.tsv",
        template=directory("results/bids/template"),
    log:
        "logs/export_bids/export_bids.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        subjects=SUBJECTS,
        seed=config["cohort"]["seed"],
    script:
        "../workflow_scripts/export_bids.py"
