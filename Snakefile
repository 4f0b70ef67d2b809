# dmriscope: deep learning on diffusion MRI as an in vivo microscope (Chen et al., Sci Rep 2024), end to end.
# Stages and files: ../shared/DESIGN.md and README.md. Every rule's logic lives in src/dmriscope.
import os

from snakemake.utils import min_version

min_version("9.0")


# the embedded default, found beside this file even with --directory; --configfile files are merged over it
configfile: os.path.join(workflow.basedir, "config.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"


if config["cohort"]["source"] == "synthetic":

    include: "rules/synthetic.smk"

else:

    include: "rules/template.smk"


if config["cohort"]["source"] == "hcp":

    include: "rules/hcp.smk"


if config["cohort"]["source"] == "bids":

    include: "rules/bids.smk"


include: "rules/dki.smk"
include: "rules/registration.smk"
include: "rules/split.smk"
include: "rules/tensors.smk"
include: "rules/pretrain.smk"
include: "rules/train.smk"
include: "rules/occlusion.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
