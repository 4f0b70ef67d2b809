# The synthetic cohort: a phantom template + atlas, demographics, and per-subject DWI at HCP's scheme.


rule prepare_template:
    output:
        fa="results/template/template_FA.nii.gz",
        atlas="results/template/atlas.nii.gz",
        labels="results/template/atlas_labels.tsv",
        wm_mask="results/template/wm_mask.nii.gz",
        planted="results/truth/planted_regions.tsv",
    params:
        synthetic=config["synthetic"],
        seed=config["cohort"]["seed"],
    log:
        "logs/prepare_template/prepare_template.log",
    script:
        "../workflow_scripts/prepare_template.py"


rule build_participants:
    output:
        participants="results/cohort/participants.tsv",
    params:
        subjects=SUBJECTS,
        cohort=config["cohort"],
    log:
        "logs/build_participants/build_participants.log",
    script:
        "../workflow_scripts/build_participants.py"


rule synthesize_subject:
    input:
        participants="results/cohort/participants.tsv",
        template="results/template/template_FA.nii.gz",
        atlas="results/template/atlas.nii.gz",
    output:
        dwi=temp("results/raw/sub-{subject}/dwi.nii.gz"),
        bval="results/raw/sub-{subject}/dwi.bval",
        bvec="results/raw/sub-{subject}/dwi.bvec",
        mask="results/raw/sub-{subject}/brain_mask.nii.gz",
        truth=expand("results/truth/sub-{{subject}}/{metric}.nii.gz", metric=METRICS),
        params="results/truth/sub-{subject}/params.json",
    params:
        synthetic=config["synthetic"],
        seed=config["cohort"]["seed"],
        dki=config["dki"],
    log:
        "logs/synthesize_subject/sub-{subject}.log",
    script:
        "../workflow_scripts/synthesize_subject.py"
