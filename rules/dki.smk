# Diffusion kurtosis imaging: FA, MD, MK in native space, fitted in batches over voxels.


rule fit_dki:
    input:
        dwi="results/raw/sub-{subject}/dwi.nii.gz",
        bval="results/raw/sub-{subject}/dwi.bval",
        bvec="results/raw/sub-{subject}/dwi.bvec",
        mask="results/raw/sub-{subject}/brain_mask.nii.gz",
        template=harmonise_template,
    output:
        maps=expand("results/dki/sub-{{subject}}/{metric}.nii.gz", metric=METRICS),
        settings="results/dki/sub-{subject}/fit.json",
    log:
        "logs/fit_dki/sub-{subject}.log",
    benchmark:
        "benchmarks-out/fit_dki/sub-{subject}.tsv"
    priority: 1  # before the next subject's simulation (rules/registration.smk says why)
    conda:
        "../envs/dmriscope.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        dki=config["dki"],
        subject="sub-{subject}",
    script:
        "../workflow_scripts/fit_dki.py"
