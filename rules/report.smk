# Tables 2 (test performance per model and metric, AUC CIs) and 4 (parameter counts at the paper's input size).
# Needs MODELS and METRICS from rules/common.smk.


rule render_table2:
    input:
        metrics=expand(
            "results/models/{model}/{metric}/metrics.json",
            model=MODELS,
            metric=METRICS,
        ),
        baseline="results/models/size_only/metrics.json",
        region_baseline=expand(
            "results/models/region_means/{metric}/metrics.json", metric=METRICS
        ),
    output:
        tsv="results/tables/table2_performance.tsv",
        md="results/tables/table2_performance.md",
        html=report(
            "results/tables/table2_performance.html",
            caption="../report/table2.rst",
            category="Tables",
        ),
    log:
        "logs/render_table2/render_table2.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        label=config["label"],
        models=MODELS,
        metrics=METRICS,
    script:
        "../workflow_scripts/render_table2.py"


rule render_table4:
    output:
        tsv="results/tables/table4_parameters.tsv",
        md="results/tables/table4_parameters.md",
        html=report(
            "results/tables/table4_parameters.html",
            caption="../report/table4.rst",
            category="Tables",
        ),
    log:
        "logs/render_table4/render_table4.log",
    conda:
        "../envs/dmriscope.yaml"
    script:
        "../workflow_scripts/render_table4.py"


rule render_pretraining_table:
    input:
        mae2d=expand(
            "results/pretrain/{metric}/fold{fold}/mae2d_history.jsonl",
            metric=METRICS,
            fold=FOLDS,
        ),
        mae3d=expand(
            "results/pretrain/{metric}/fold{fold}/mae3d_history.jsonl",
            metric=METRICS,
            fold=FOLDS,
        ),
    output:
        tsv="results/tables/pretraining.tsv",
        md="results/tables/pretraining.md",
        html=report(
            "results/tables/pretraining.html",
            caption="../report/pretraining.rst",
            category="Tables",
        ),
    log:
        "logs/render_pretraining_table/render_pretraining_table.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        metrics=METRICS,
        folds=FOLDS,
    script:
        "../workflow_scripts/render_pretraining_table.py"
