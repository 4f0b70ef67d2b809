# Registration to the FA template: FA drives it (affine + nonlinear), the same transform carries MD and MK, in one
# job per subject (a separate warp job spent 1.7 s of its 2.9 s importing antspyx again: README "Benchmarks").


rule register_fa:
    input:
        fa="results/dki/sub-{subject}/FA.nii.gz",
        others=expand(
            "results/dki/sub-{{subject}}/{metric}.nii.gz", metric=["MD", "MK"]
        ),
        template="results/template/template_FA.nii.gz",
    output:
        fa="results/registered/sub-{subject}/FA.nii.gz",
        others=expand(
            "results/registered/sub-{{subject}}/{metric}.nii.gz", metric=["MD", "MK"]
        ),
        affine="results/registered/sub-{subject}/xfm_affine.mat",
        warp="results/registered/sub-{subject}/xfm_warp.nii.gz",
        qc_tsv="results/registered/sub-{subject}/qc.tsv",
    log:
        "logs/register_fa/sub-{subject}.log",
    benchmark:
        "benchmarks-out/register_fa/sub-{subject}.tsv"
    # a subject's last stage first: the ready queue stays short, and Snakemake re-stats every ready job's inputs at
    # each scheduling round (240 subjects: ~30% of a core for the scheduler alone, README "Benchmarks")
    priority: 2
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


# One job draws every subject's QC figure: matplotlib's import and first figure cost a per-subject job ~0.5 s of CPU.
rule render_registration_qc:
    input:
        registered=expand(
            "results/registered/sub-{subject}/FA.nii.gz", subject=SUBJECTS
        ),
        qc_tsvs=expand("results/registered/sub-{subject}/qc.tsv", subject=SUBJECTS),
        template="results/template/template_FA.nii.gz",
    output:
        pngs=expand("results/qc/registration/sub-{subject}.png", subject=SUBJECTS),
    log:
        "logs/render_registration_qc/render_registration_qc.log",
    benchmark:
        "benchmarks-out/render_registration_qc/render_registration_qc.tsv"
    conda:
        "../envs/dmriscope.yaml"
    resources:
        mem_mb=2000,
        runtime=60,
    script:
        "../workflow_scripts/render_registration_qc.py"
