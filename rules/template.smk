# The real-data template and atlas (cohort.source hcp or bids): FSL's FMRIB58 FA + JHU-ICBM from $FSLDIR, or any FA
# template, integer atlas and labels (FSL XML or TSV) given by path in config section template.


rule prepare_template:
    output:
        fa="results/template/template_FA.nii.gz",
        atlas="results/template/atlas.nii.gz",
        labels="results/template/atlas_labels.tsv",
        wm_mask="results/template/wm_mask.nii.gz",
    log:
        "logs/prepare_template/prepare_template.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        template=config["template"],
        backend=config["registration"]["backend"],
    script:
        "../workflow_scripts/prepare_template_fsl.py"
