# The real-data path: HCP Young Adult diffusion data from S3, demographics from the HCP CSV (template: template.smk).
# Downloads share one local limit: `--resources s3_connections=4` (undeclared means unlimited; the SLURM executor
# plugin ignores this non-standard resource, so on a cluster it limits only jobs run locally).
from dmriscope.cohort.demographics import hcp_source_files
from dmriscope.cohort.hcp import s3_settings


rule build_participants:
    input:
        sources=hcp_source_files(config["hcp"], config["cohort"]["participants"]),
    output:
        participants="results/cohort/participants.tsv",
        excluded="results/cohort/excluded.tsv",
    log:
        "logs/build_participants/build_participants.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        hcp=config["hcp"],
        table=config["cohort"]["participants"],
    script:
        "../workflow_scripts/build_participants_hcp.py"


rule download_hcp_subject:
    output:
        dwi=temp("results/raw/sub-{subject}/dwi.nii.gz"),
        bval="results/raw/sub-{subject}/dwi.bval",
        bvec="results/raw/sub-{subject}/dwi.bvec",
        mask="results/raw/sub-{subject}/brain_mask.nii.gz",
    log:
        "logs/download_hcp_subject/sub-{subject}.log",
    benchmark:
        "benchmarks-out/download_hcp_subject/sub-{subject}.tsv"
    conda:
        "../envs/dmriscope.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=60,
        s3_connections=1,
    params:
        s3=s3_settings(config["hcp"]),
    script:
        "../workflow_scripts/download_hcp_subject.py"
