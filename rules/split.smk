# A leak-free train/val/test split stratified by sex x age bin, and Table 1.


rule split_cohort:
    input:
        participants="results/cohort/participants.tsv",
    output:
        split="results/split/split.tsv",
        digest="results/split/split.sha256",
    log:
        "logs/split_cohort/split_cohort.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        counts=split_counts(config, len(SUBJECTS)),
        seed=config["split"]["seed"],
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
    script:
        "../workflow_scripts/render_table1.py"
