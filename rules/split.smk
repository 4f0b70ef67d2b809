# A leak-free split stratified by sex x age bin (holdout train/val/test, or k folds each with its own
# train/val/test table), and Table 1.


rule split_cohort:
    input:
        participants="results/cohort/participants.tsv",
        volumes=branch(
            config["split"]["match"] != "none",
            then="results/cohort/brain_volumes.tsv",
        ),
    output:
        split="results/split/split.tsv",
        digest="results/split/split.sha256",
        folds=expand("results/split/fold{fold}.tsv", fold=FOLDS),
    log:
        "logs/split_cohort/split_cohort.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        label=config["label"],
        age_bins=config["cohort"]["age_bins"],
        stratify=config["split"]["stratify"],
        scheme=config["split"]["scheme"],
        counts=split_counts(config, len(SUBJECTS)) if not KFOLD else [],
        n_val=inner_val_count(config, len(SUBJECTS)) if KFOLD else 0,
        seed=config["split"]["seed"],
        match=config["split"]["match"],
    script:
        "../workflow_scripts/split_cohort.py"


rule render_table1:
    input:
        split="results/split/split.tsv",
    output:
        tsv="results/tables/table1_cohort.tsv",
        md="results/tables/table1_cohort.md",
        html=report(
            "results/tables/table1_cohort.html",
            caption="../report/table1.rst",
            category="Tables",
        ),
    log:
        "logs/render_table1/render_table1.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        label=config["label"],
    script:
        "../workflow_scripts/render_table1.py"


rule measure_brain_volumes:
    input:
        masks=expand("results/raw/sub-{subject}/brain_mask.nii.gz", subject=SUBJECTS),
    output:
        volumes="results/cohort/brain_volumes.tsv",
    log:
        "logs/measure_brain_volumes/measure_brain_volumes.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        subjects=SUBJECTS,
    script:
        "../workflow_scripts/measure_brain_volumes.py"


rule render_table1b:
    input:
        split="results/split/split.tsv",
        volumes="results/cohort/brain_volumes.tsv",
    output:
        tsv="results/tables/table1b_volume.tsv",
        md="results/tables/table1b_volume.md",
        html=report(
            "results/tables/table1b_volume.html",
            caption="../report/table1.rst",
            category="Tables",
        ),
    log:
        "logs/render_table1b/render_table1b.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        label=config["label"],
    script:
        "../workflow_scripts/render_table1b.py"
