"""Every config under configs/, alone and in the combinations the README and the configs' own comments give, passes
validation when merged over config.yaml as Snakemake's --configfile merges it (a broken shipped config would otherwise
surface only when a user runs it)."""

from __future__ import annotations

import copy

import pytest
import yaml
from snakemake.utils import update_config

from dmriscope.cohort.subjects import load_cohort
from dmriscope.config import load_config, seeds

OVERLAYS = [
    ("cohort-b.yaml",),
    ("cohort-c.yaml",),
    ("cohort-d.yaml",),
    ("null.yaml",),
    ("kfold.yaml",),
    ("seeds.yaml",),
    ("matched.yaml",),
    ("size-only-5.yaml",),
    ("size-only-15.yaml",),
    ("hcp.yaml",),
    ("ci.yaml",),
    ("paper-scale.yaml",),
    ("bids-export.yaml",),
    ("bids-example.yaml",),
    ("cohort-b.yaml", "kfold.yaml"),
    ("cohort-c.yaml", "kfold.yaml"),
    ("cohort-d.yaml", "kfold.yaml"),
    ("cohort-d.yaml", "kfold.yaml", "robust.yaml"),
    ("cohort-e.yaml", "kfold.yaml", "robust.yaml"),
    ("null.yaml", "kfold.yaml"),
    ("size-only-15.yaml", "kfold.yaml"),
    ("size-only-15.yaml", "kfold.yaml", "matched.yaml"),
    ("cohort-b.yaml", "matched.yaml"),
    ("regress-volume.yaml",),
    ("size-only-15.yaml", "regress-volume.yaml"),
    ("size-only-5.yaml", "regress-volume.yaml"),
    ("size-only-15.yaml", "kfold.yaml", "regress-volume.yaml"),
    ("size-only-15.yaml", "harmonise.yaml", "regress-volume.yaml"),
    ("match-train.yaml",),
    ("size-only-5.yaml", "match-train.yaml"),
    ("cohort-b.yaml", "kfold.yaml", "match-train.yaml"),
    ("kfold.yaml", "seeds-3.yaml"),
    ("null.yaml", "kfold.yaml", "seeds-3.yaml"),
    ("kfold.yaml", "robust.yaml"),
]


def merged(project_root, names):
    config = yaml.safe_load((project_root / "config.yaml").read_text())
    for name in names:
        update_config(config, yaml.safe_load((project_root / "configs" / name).read_text()) or {})
    return config


def test_every_config_file_is_listed(project_root):
    listed = {name for combo in OVERLAYS for name in combo}
    assert {p.name for p in (project_root / "configs").glob("*.yaml")} == listed


def hcp_inputs(folder):
    """configs/hcp.yaml's two user files, for the paper's cohort: 1031 subjects, 471 M / 560 F, three age bins."""
    (folder / "hcp").mkdir()
    ids = [str(100000 + i) for i in range(1031)]
    rows = [f"{s},{'M' if i < 471 else 'F'},{('22-25', '26-30', '31-35')[i % 3]},true" for i, s in enumerate(ids)]
    (folder / "hcp" / "unrestricted.csv").write_text("Subject,Gender,Age,3T_dMRI_Compl\n" + "\n".join(rows) + "\n")
    (folder / "hcp" / "subjects.txt").write_text("\n".join(ids) + "\n")


def bids_inputs(folder):
    """configs/bids-example.yaml's dataset where its relative paths point (../export from the run directory): 240
    participants with a patient/control group, as export_bids writes them."""
    root = folder / "export" / "results" / "bids" / "rawdata"
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    rows = [f"sub-syn{i:04d}\t{('patient', 'control')[i % 2]}\t{22 + i % 15}" for i in range(240)]
    (root / "participants.tsv").write_text("participant_id\tgroup\tage\n" + "\n".join(rows) + "\n")
    (folder / "bids").mkdir()


@pytest.mark.parametrize("names", OVERLAYS, ids=["+".join(n) for n in OVERLAYS])
def test_shipped_config_validates(project_root, names, tmp_path, monkeypatch):
    if "hcp.yaml" in names:  # its demographics and subject list are the user's files, read at validation
        hcp_inputs(tmp_path)
        monkeypatch.chdir(tmp_path)
    if "bids-example.yaml" in names:
        bids_inputs(tmp_path)
        monkeypatch.chdir(tmp_path / "bids")
    load_cohort(merged(project_root, names))  # the schema, and the split against the cohort's subjects


def test_overlays_change_what_they_say(project_root):
    base = load_config(merged(project_root, ()))
    cohort_b, cohort_c, cohort_d = (load_config(merged(project_root, (f"cohort-{c}.yaml",))) for c in "bcd")
    planted = lambda c: sorted(e["region"] for e in c["synthetic"]["sex_effects"])  # noqa: E731
    assert set(planted(cohort_c)).isdisjoint(planted(base))
    assert set(planted(cohort_c)).isdisjoint(planted(cohort_b))
    assert cohort_c["cohort"]["seed"] != base["cohort"]["seed"]
    others = planted(base) + planted(cohort_b) + planted(cohort_c)
    assert set(planted(cohort_d)).isdisjoint(others) and len(planted(cohort_d)) == 8
    assert cohort_d["cohort"]["seed"] not in {c["cohort"]["seed"] for c in (base, cohort_b, cohort_c)}
    assert seeds(load_config(merged(project_root, ("seeds.yaml",)))) == ["0", "1", "2", "3", "4"]
    robust = load_config(merged(project_root, ("kfold.yaml", "seeds-3.yaml")))
    assert seeds(robust) == ["0", "1", "2"] and robust["split"]["scheme"] == "kfold"
    assert robust["occlusion"]["union_min_models"] == 2 and base["occlusion"]["union_min_models"] == 1
    recommended = load_config(merged(project_root, ("kfold.yaml", "robust.yaml")))
    assert seeds(recommended, "cnn3d") == seeds(recommended, "cnn2d") == ["0", "1", "2", "3", "4"]
    assert seeds(recommended, "vit_scratch") == ["0", "1", "2"]
    assert recommended["occlusion"]["union_min_models"] == 2 and recommended["split"]["scheme"] == "kfold"
    assert load_config(merged(project_root, ("kfold.yaml",)))["occlusion"]["union_min_models"] == 2
    assert seeds(copy.deepcopy(base)) == [str(base["train"]["seed"])]
