# Which regions drive each classifier: occlusion of the 48 atlas regions on the test set of every fold x seed run,
# pooled like the predictions (seeds averaged, folds concatenated: each subject by its own fold's models), one-sided
# Wilcoxon tests per region, Table 3, the paired model comparison, Figures 4-6 and (synthetic cohorts) the
# ground-truth check.
# Needs MODELS, METRICS, FOLDS, replicates() from rules/common.smk and RUN from rules/train.smk.


rule occlude_regions:
    input:
        checkpoint=f"{RUN}/best.pt",
        tensor=STORE,
        index=FOLD_INDEX,
        brain_mask=GRID_BRAIN_MASK,
        atlas=GRID_ATLAS,
        wm_mask=GRID_WM_MASK,
        labels="results/template/atlas_labels.tsv",
    output:
        delta_p="results/occlusion/{model}/{metric}/fold{fold}/seed{seed}/delta_p.tsv",
    log:
        "logs/occlude_regions/{model}/{metric}/fold{fold}_seed{seed}.log",
    benchmark:
        "benchmarks-out/occlude_regions/{model}/{metric}/fold{fold}_seed{seed}.tsv"
    conda:
        "../envs/dmriscope.yaml"
    threads: config["occlusion"]["threads"]
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        batch_size=config["occlusion"]["batch_size"],
    script:
        "../workflow_scripts/occlude_regions.py"


rule pool_occlusion:
    input:
        delta_p=replicates(
            "results/occlusion/{model}/{metric}/fold{fold}/seed{seed}/delta_p.tsv"
        ),
    output:
        delta_p="results/occlusion/{model}/{metric}/delta_p.tsv",
    log:
        "logs/pool_occlusion/{model}/{metric}.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        runs=replicate_runs,
    script:
        "../workflow_scripts/pool_occlusion.py"


rule test_regions:
    input:
        delta_p="results/occlusion/{model}/{metric}/delta_p.tsv",
        atlas=GRID_ATLAS,
        wm_mask=GRID_WM_MASK,
    output:
        regions="results/occlusion/{model}/{metric}/regions.tsv",
    log:
        "logs/test_regions/{model}/{metric}.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        alpha=config["occlusion"]["alpha"],
        scale=config["occlusion"]["test_scale"],
    script:
        "../workflow_scripts/test_regions.py"


rule test_union:
    input:
        regions=expand("results/occlusion/{model}/{{metric}}/regions.tsv", model=MODELS),
    output:
        regions="results/occlusion/union/{metric}/regions.tsv",
    log:
        "logs/test_union/{metric}.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        alpha=config["occlusion"]["alpha"],
        min_models=config["occlusion"]["union_min_models"],
    script:
        "../workflow_scripts/test_union.py"


rule render_table3:
    input:
        regions=expand(
            "results/occlusion/{model}/{metric}/regions.tsv",
            metric=METRICS,
            model=MODELS,
        ),
        union=expand("results/occlusion/union/{metric}/regions.tsv", metric=METRICS),
    output:
        tsv=report(
            "results/tables/table3_regions.tsv",
            caption="../report/table3.rst",
            category="Tables",
            labels={"table": "Table 3", "format": "TSV"},
        ),
        md="results/tables/table3_regions.md",
        html=report(
            "results/tables/table3_regions.html",
            caption="../report/table3.rst",
            category="Tables",
            labels={"table": "Table 3", "format": "HTML"},
        ),
    log:
        "logs/render_table3/render_table3.log",
    conda:
        "../envs/dmriscope.yaml"
    script:
        "../workflow_scripts/render_table3.py"


rule compare_models:
    input:
        predictions=expand(
            "results/models/{model}/{metric}/predictions.tsv",
            metric=METRICS,
            model=MODELS,
        ),
    output:
        tsv=report(
            "results/tables/model_comparison.tsv",
            caption="../report/model_comparison.rst",
            category="Tables",
            labels={"table": "Model comparison", "format": "TSV"},
        ),
        md="results/tables/model_comparison.md",
        html=report(
            "results/tables/model_comparison.html",
            caption="../report/model_comparison.rst",
            category="Tables",
            labels={"table": "Model comparison", "format": "HTML"},
        ),
    log:
        "logs/compare_models/compare_models.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        reference=config["occlusion"]["reference_model"],
    script:
        "../workflow_scripts/compare_models.py"


rule render_region_figures:
    input:
        regions=expand("results/occlusion/{model}/{{metric}}/regions.tsv", model=MODELS),
        union="results/occlusion/union/{metric}/regions.tsv",
        template="results/template/template_FA.nii.gz",
        atlas="results/template/atlas.nii.gz",
        labels="results/template/atlas_labels.tsv",
    output:
        significant=report(
            "results/figures/regions/{metric}_significant.png",
            caption="../report/regions_significant.rst",
            category="Regions (Figures 4-6)",
            subcategory="{metric}",
            labels={"metric": "{metric}", "figure": "significant regions"},
        ),
        heatmap=report(
            "results/figures/regions/{metric}_heatmap.png",
            caption="../report/regions_heatmap.rst",
            category="Regions (Figures 4-6)",
            subcategory="{metric}",
            labels={"metric": "{metric}", "figure": "median delta p"},
        ),
    log:
        "logs/render_region_figures/{metric}.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        criterion=config["occlusion"]["figure_criterion"],
        n_slices=config["occlusion"]["figure_slices"],
    script:
        "../workflow_scripts/render_region_figures.py"


rule check_truth:
    input:
        regions=expand(
            "results/occlusion/{model}/{metric}/regions.tsv",
            metric=METRICS,
            model=MODELS,
        ),
        union=expand("results/occlusion/union/{metric}/regions.tsv", metric=METRICS),
        planted=PLANTED or [],
    output:
        tsv=report(
            "results/tables/truth_check.tsv",
            caption="../report/truth_check.rst",
            category="Ground truth (synthetic)",
            labels={"table": "Truth check", "format": "TSV"},
        ),
        md="results/tables/truth_check.md",
        html=report(
            "results/tables/truth_check.html",
            caption="../report/truth_check.rst",
            category="Ground truth (synthetic)",
            labels={"table": "Truth check", "format": "HTML"},
        ),
    log:
        "logs/check_truth/check_truth.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        label=config["label"],
        criterion=config["occlusion"]["truth_criterion"],
    script:
        "../workflow_scripts/check_truth.py"
