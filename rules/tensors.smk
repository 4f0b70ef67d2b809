# The tensor store: atlas and masks on the model grid, then every subject's registered FA/MD/MK stacked into one
# memory-mapped .npy per metric (+ subject index); per fold of the split, that fold's index and the normalisation
# statistics of its training subjects (global and per voxel). Needs SUBJECTS from common.smk.


rule grid_atlas:
    input:
        atlas="results/template/atlas.nii.gz",
        labels="results/template/atlas_labels.tsv",
        wm_mask="results/template/wm_mask.nii.gz",
        template="results/template/template_FA.nii.gz",
    output:
        atlas="results/tensors/atlas.npy",
        labels="results/tensors/atlas_labels.tsv",
        wm_mask="results/tensors/wm_mask.npy",
        brain_mask="results/tensors/brain_mask.npy",
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
        brain_mask="results/tensors/brain_mask.npy",
    output:
        tensor="results/tensors/{metric}.npy",
        index="results/tensors/{metric}_index.tsv",
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
        subjects=SUBJECTS,
    script:
        "../workflow_scripts/stack_tensors.py"


rule normalise_fold:
    input:
        tensor="results/tensors/{metric}.npy",
        index="results/tensors/{metric}_index.tsv",
        fold="results/split/fold{fold}.tsv",
        brain_mask="results/tensors/brain_mask.npy",
    output:
        index="results/tensors/fold{fold}/{metric}_index.tsv",
        norm="results/tensors/fold{fold}/{metric}_norm.json",
        norm_voxels="results/tensors/fold{fold}/{metric}_norm.npy",
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
    script:
        "../workflow_scripts/normalise_fold.py"
