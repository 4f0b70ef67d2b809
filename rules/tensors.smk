# The tensor store: atlas and masks on the model grid, then every subject's registered FA/MD/MK stacked into one
# memory-mapped .npy per metric (+ subject index); per fold of the split, that fold's index and the normalisation
# statistics of its training subjects (global and per voxel; with tensors.regress_out, each voxel's slope on brain
# volume too). Needs SUBJECTS from common.smk.


rule grid_atlas:
    input:
        atlas="results/template/atlas.nii.gz",
        labels="results/template/atlas_labels.tsv",
        wm_mask="results/template/wm_mask.nii.gz",
        template="results/template/template_FA.nii.gz",
    output:
        atlas=GRID_ATLAS,
        labels=GRID_LABELS,
        wm_mask=GRID_WM_MASK,
        brain_mask=GRID_BRAIN_MASK,
    log:
        "logs/grid_atlas/grid_atlas.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        grid=config["grid"],
        fa_threshold=config["tensors"]["brain_fa_threshold"],
    script:
        "../workflow_scripts/grid_atlas.py"


rule stack_tensors:
    input:
        maps=expand(
            "results/registered/sub-{subject}/{{metric}}.nii.gz", subject=SUBJECTS
        ),
        split="results/split/split.tsv",
        template="results/template/template_FA.nii.gz",
        brain_mask=GRID_BRAIN_MASK,
    output:
        tensor=STORE,
        index=STORE_INDEX,
        smoothness="results/tensors/{metric}_smoothness.tsv",
    log:
        "logs/stack_tensors/{metric}.log",
    benchmark:
        "benchmarks-out/stack_tensors/{metric}.tsv"
    conda:
        "../envs/dmriscope.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        label=config["label"],
        subjects=SUBJECTS,
        smooth_to_fwhm=config["tensors"]["smooth_to_fwhm"],
    script:
        "../workflow_scripts/stack_tensors.py"


rule normalise_fold:
    input:
        tensor=STORE,
        index=STORE_INDEX,
        fold="results/split/fold{fold}.tsv",
        brain_mask=GRID_BRAIN_MASK,
        volumes=branch(
            config["tensors"]["regress_out"] is not None,
            then="results/cohort/brain_volumes.tsv",
        ),
    output:
        index=FOLD_INDEX,
        norm=FOLD_NORM,
        norm_voxels=FOLD_NORM_VOXELS,
    log:
        "logs/normalise_fold/fold{fold}/{metric}.log",
    benchmark:
        "benchmarks-out/normalise_fold/fold{fold}/{metric}.tsv"
    conda:
        "../envs/dmriscope.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        normalisation=config["tensors"]["normalisation"],
        clip=config["tensors"]["clip"],
        regress_out=config["tensors"]["regress_out"],
    script:
        "../workflow_scripts/normalise_fold.py"


rule render_table1c:
    input:
        split="results/split/split.tsv",
        smoothness=expand("results/tensors/{metric}_smoothness.tsv", metric=METRICS),
    output:
        tsv="results/tables/table1c_smoothness.tsv",
        md="results/tables/table1c_smoothness.md",
        html=report(
            "results/tables/table1c_smoothness.html",
            caption="../report/table1c.rst",
            category="Tables",
        ),
    log:
        "logs/render_table1c/render_table1c.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        label=config["label"],
        metrics=METRICS,
    script:
        "../workflow_scripts/render_table1c.py"
