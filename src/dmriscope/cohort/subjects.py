"""The cohort's subjects, known when the DAG is built, and the config check that needs them (rules/common.smk).

Every DAG build imports this module, so it imports only `dmriscope.config` at the top; HCP's demographics, nibabel
(through `dmriscope.io`) and pandas load only for the sources that need them.
"""

from __future__ import annotations

from pathlib import Path

from dmriscope.config import ConfigError, check_split_sizes, load_config


def load_cohort(config: dict) -> list[str]:
    """Validate and complete `config` in place (`dmriscope.config.load_config`), list its subjects and check that
    the split fits them; ConfigError naming the key otherwise."""
    load_config(config)
    subjects = subject_ids(config)
    check_split_sizes(config, len(subjects))
    return subjects


def subject_ids(config: dict) -> list[str]:
    """The cohort's subject IDs, known when the DAG is built.

    BIDS (cohort.source bids): the participants of the dataset whose label value is one of the two, less
    ``bids.exclude`` (`dmriscope.cohort.bids.bids_cohort`). HCP (cohort.source hcp):
    `dmriscope.cohort.demographics.hcp_subject_ids` (the CSV's subjects with diffusion data, filtered by
    hcp.subjects). Otherwise from `cohort.participants` when given (its `subject` column), else
    `syn0001`.. for the synthetic cohort.
    """
    table = config["cohort"]["participants"]
    if config["cohort"]["source"] == "bids":
        return bids_subject_ids(config)
    if config["cohort"]["source"] == "hcp":
        from dmriscope.cohort.demographics import hcp_subject_ids
        from dmriscope.io import InputError

        try:
            return hcp_subject_ids(config["hcp"], table)
        except InputError as exc:
            message = str(exc) if str(exc).startswith("config key") else f"config key 'hcp': {exc}"
            raise ConfigError(message) from None
    if table:
        path = Path(table)
        if not path.exists():
            raise ConfigError(f"config key 'cohort.participants': {path} not found")
        import pandas as pd  # here, not at the top: every DAG build imports this module

        frame = pd.read_csv(path, sep="\t" if path.suffix in (".tsv", ".txt") else ",", dtype=str)
        if "subject" not in frame.columns:
            raise ConfigError(f"config key 'cohort.participants': {path} has no 'subject' column")
        ids = [s.strip().removeprefix("sub-") for s in frame["subject"].dropna()]
        bad = [s for s in ids if not s.isalnum()]
        if bad:
            raise ConfigError(f"config key 'cohort.participants': subject IDs must be alphanumeric, got {bad[:3]}")
        if len(set(ids)) != len(ids):
            raise ConfigError(f"config key 'cohort.participants': duplicate subject IDs in {path}")
        return ids
    return [f"syn{i:04d}" for i in range(1, config["cohort"]["n_subjects"] + 1)]


def bids_subject_ids(config: dict) -> list[str]:
    """The BIDS dataset's participants to process; ConfigError naming the key or file otherwise."""
    from dmriscope.cohort.bids import bids_cohort
    from dmriscope.io import InputError
    from dmriscope.label import Label

    try:
        kept, _ = bids_cohort(config["bids"], Label.from_config(config["label"]))
    except InputError as exc:
        raise ConfigError(str(exc)) from None
    if kept.empty:
        raise ConfigError(f"config key 'bids.root': no participant of {config['bids']['root']} is left to process")
    return kept["subject"].tolist()
