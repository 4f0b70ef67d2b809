# Registration to the FA template: FA drives it (affine + nonlinear), the same transform carries MD and MK.


rule register_fa:
    input:
        fa="results/dki/sub-{subject}/FA.nii.gz",
        template="results/template/template_FA.nii.gz",
    output:
        fa="results/registered/sub-{subject}/FA.nii.gz",
        affine="results/registered/sub-{subject}/xfm_affine.mat",
        warp="results/registered/sub-{subject}/xfm_warp.nii.gz",
        qc_tsv="results/registered/sub-{subject}/qc.tsv",
        qc_png="results/qc/registration/sub-{subject}.png",
    log:
        "logs/register_fa/sub-{subject}.log",
    benchmark:
        "benchmarks-out/register_fa/sub-{subject}.tsv"
    conda:
        "../envs/dmriscope.yaml"
    threads: config["registration"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        registration=config["registration"],
    script:
        "../workflow_scripts/register_fa.py"


rule warp_metric:
    input:
        maps=expand("results/dki/sub-{{subject}}/{metric}.nii.gz", metric=["MD", "MK"]),
        template="results/template/template_FA.nii.gz",
        affine="results/registered/sub-{subject}/xfm_affine.mat",
        warp="results/registered/sub-{subject}/xfm_warp.nii.gz",
    output:
        maps=expand(
            "results/registered/sub-{{subject}}/{metric}.nii.gz", metric=["MD", "MK"]
        ),
    log:
        "logs/warp_metric/sub-{subject}.log",
    benchmark:
        "benchmarks-out/warp_metric/sub-{subject}.tsv"
    conda:
        "../envs/dmriscope.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        registration=config["registration"],
    script:
        "../workflow_scripts/warp_metric.py"
