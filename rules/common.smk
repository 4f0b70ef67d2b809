# Configuration validation, the subject list, input functions and wildcard constraints. Stage files hold rules only.
import sys

from dmriscope.config import METRICS, ConfigError, load_config, split_counts, subject_ids

try:
    load_config(config)
    SUBJECTS = subject_ids(config)
except ConfigError as exc:
    sys.exit(f"dmriscope: {exc}")


wildcard_constraints:
    subject="[A-Za-z0-9]+",
    metric="|".join(METRICS),


def registered_maps(wildcards=None):
    """Every subject's FA, MD and MK in template space."""
    return expand("results/registered/sub-{subject}/{metric}.nii.gz", subject=SUBJECTS, metric=METRICS)


def registration_qc(wildcards=None):
    return expand("results/qc/registration/sub-{subject}.png", subject=SUBJECTS)


def get_final_output():
    """What `rule all` asks for, up to `stages.until`."""
    outputs = registered_maps() + registration_qc()
    if config["stages"]["until"] == "registration":
        return outputs
    outputs += ["results/split/split.tsv", "results/tables/table1_cohort.md"]
    return outputs
