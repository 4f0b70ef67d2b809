"""Template + atlas from a fake $FSLDIR: FSL's file layout and XML format, checked against fslpy's own parser."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dmriscope.io import InputError
from dmriscope.template import (
    FSL_ATLAS,
    FSL_LABELS,
    FSL_TEMPLATE,
    prepare_template_from_config,
    read_atlas_labels,
    resolve_sources,
)

FIXTURES = Path(__file__).parent / "fixtures"
SHAPE = (14, 16, 12)
AFFINE = np.array([[-1.0, 0, 0, 7], [0, 1, 0, -8], [0, 0, 1, -6], [0, 0, 0, 1]])  # FSL's radiological 1 mm layout


def fake_images(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An int16 FA x 10000 image and a label image holding regions 1..48 in a block of the grid."""
    rng = np.random.default_rng(seed)
    atlas = np.zeros(SHAPE, dtype=np.int16)
    core = atlas[2:-2, 2:-2, 2:-2]  # 10 x 12 x 8 = 960 voxels
    core[...] = (np.arange(core.size) % 49).reshape(core.shape)  # every region 1..48 present, some background
    fa = rng.integers(500, 2000, SHAPE).astype(np.int16)
    fa[atlas > 0] = rng.integers(3000, 9000, int((atlas > 0).sum()))
    return fa, atlas


@pytest.fixture
def fsldir(tmp_path: Path) -> Path:
    """$FSLDIR with FMRIB58_FA_1mm, JHU-ICBM-labels-1mm and JHU-labels.xml where FSL keeps them."""
    root = tmp_path / "fsl"
    fa, atlas = fake_images()
    for rel, data in ((FSL_TEMPLATE, fa), (FSL_ATLAS, atlas)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(data, AFFINE), root / rel)
    shutil.copy(FIXTURES / "JHU-labels.xml", root / FSL_LABELS)
    return root


def outputs(tmp_path: Path) -> dict[str, Path]:
    out = tmp_path / "results" / "template"
    return {
        "fa_out": out / "template_FA.nii.gz",
        "atlas_out": out / "atlas.nii.gz",
        "labels_out": out / "atlas_labels.tsv",
        "wm_mask_out": out / "wm_mask.nii.gz",
    }


def test_outputs_from_fsldir(fsldir, tmp_path):
    paths = outputs(tmp_path)
    prepare_template_from_config({}, "fsl", fsldir=str(fsldir), **paths)
    fa, atlas = fake_images()
    out_fa = nib.load(paths["fa_out"])
    np.testing.assert_allclose(out_fa.get_fdata(), fa / 10000.0, atol=1e-6)  # FA x 10000 -> FA
    np.testing.assert_allclose(out_fa.affine, AFFINE)
    np.testing.assert_array_equal(np.asarray(nib.load(paths["atlas_out"]).dataobj), atlas)
    np.testing.assert_array_equal(np.asarray(nib.load(paths["wm_mask_out"]).dataobj), atlas > 0)
    labels = pd.read_csv(paths["labels_out"], sep="\t")
    assert labels["index"].tolist() == list(range(1, 49))
    bundled = pd.read_csv(Path(__file__).parents[1] / "src/dmriscope/data/jhu_labels.tsv", sep="\t")
    assert labels["name"].tolist() == bundled["name"].tolist()


def test_labels_agree_with_fslpy(fsldir):
    from fsl.data.atlases import AtlasDescription

    description = AtlasDescription(str(fsldir / FSL_LABELS))
    by_fslpy = {label.value: label.name for label in description.labels if label.value != 0}
    ours = read_atlas_labels(fsldir / FSL_LABELS)
    assert dict(zip(ours["index"], ours["name"])) == by_fslpy


def test_old_zero_based_xml_is_shifted(tmp_path):
    text = (FIXTURES / "JHU-labels.xml").read_text()
    lines = [line for line in text.splitlines() if ">Unclassified<" not in line]
    shifted = []
    for line in lines:  # index="k" -> index="k-1": the old convention, region value = index + 1
        if 'index="' in line:
            k = int(line.split('index="')[1].split('"')[0])
            line = line.replace(f'index="{k}"', f'index="{k - 1}"')
        shifted.append(line)
    old = tmp_path / "old.xml"
    old.write_text("\n".join(shifted))
    assert read_atlas_labels(old).equals(read_atlas_labels(FIXTURES / "JHU-labels.xml"))


def test_fsl_backend_without_fsldir_is_one_line(fsldir):
    given = {
        "fa": str(fsldir / FSL_TEMPLATE),
        "atlas": str(fsldir / FSL_ATLAS),
        "atlas_labels": str(fsldir / FSL_LABELS),
    }
    with pytest.raises(InputError, match=r"'fsl' needs FSL, but \$FSLDIR is not set") as info:
        resolve_sources(given, "fsl", None)
    assert "\n" not in str(info.value)
    assert resolve_sources(given, "ants", None).fa == fsldir / FSL_TEMPLATE  # ants takes the given paths
    with pytest.raises(InputError, match="config key 'template.atlas'"):
        resolve_sources({"fa": given["fa"]}, "ants", None)


def test_given_path_overrides_fsldir(fsldir, tmp_path):
    other = tmp_path / "my_template.nii.gz"
    fa, _ = fake_images()
    nib.save(nib.Nifti1Image(fa.astype(np.float32) / 10000, AFFINE), other)
    sources = resolve_sources({"fa": str(other)}, "fsl", str(fsldir))
    assert sources.fa == other and sources.atlas == fsldir / FSL_ATLAS
    paths = outputs(tmp_path)
    prepare_template_from_config({"fa": str(other)}, "fsl", fsldir=str(fsldir), **paths)
    np.testing.assert_allclose(nib.load(paths["fa_out"]).get_fdata(), fa / 10000.0, atol=1e-6)  # already 0..1


def test_missing_file_names_it(fsldir):
    (fsldir / FSL_ATLAS).unlink()
    with pytest.raises(InputError, match="JHU-ICBM-labels-1mm.nii.gz: not found"):
        resolve_sources({}, "fsl", str(fsldir))


def rewrite_atlas(fsldir: Path, atlas: np.ndarray, affine: np.ndarray = AFFINE) -> None:
    nib.save(nib.Nifti1Image(atlas, affine), fsldir / FSL_ATLAS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("grid", "does not match the FA template"),
        ("label49", r"label value\(s\) \[49\] not in JHU-labels.xml"),
        ("empty_region", r"region\(s\) \[7\] have no voxels"),
        ("short_xml", r"label value\(s\) \[\d+\] not in JHU-labels.xml"),  # any region count, but all named
    ],
)
def test_inconsistent_inputs(fsldir, tmp_path, change, message):
    _, atlas = fake_images()
    if change == "grid":
        rewrite_atlas(fsldir, atlas, np.diag([2.0, 2.0, 2.0, 1.0]))
    elif change == "label49":
        atlas[0, 0, 0] = 49
        rewrite_atlas(fsldir, atlas)
    elif change == "empty_region":
        atlas[atlas == 7] = 0
        rewrite_atlas(fsldir, atlas)
    else:
        xml = fsldir / FSL_LABELS
        xml.write_text("\n".join(line for line in xml.read_text().splitlines() if "Tapetum L" not in line))
    paths = outputs(tmp_path)
    with pytest.raises(InputError, match=message):
        prepare_template_from_config({}, "fsl", fsldir=str(fsldir), **paths)
    assert not any(path.exists() for path in paths.values())


def test_rule_prepare_template(fsldir, tmp_path, project_root):
    """The prepare_template rule of rules/hcp.smk on the fake $FSLDIR (a real Snakemake run)."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "hcp.csv").write_text(
        "Subject,Gender,Age,3T_dMRI_Compl\n" + "".join(f"10020{i},M,26-30,true\n" for i in range(4))
    )
    (work / "config.yaml").write_text(
        "cohort: {source: hcp}\nhcp: {demographics: hcp.csv}\nregistration: {backend: fsl}\n"
        "split: {n_train: 1, n_val: 1, n_test: 1}\n"
    )
    env = {**os.environ, "FSLDIR": str(fsldir)}
    command = [sys.executable, "-m", "snakemake", "-s", str(project_root / "Snakefile"), "-d", str(work)]
    command += ["--configfile", str(work / "config.yaml"), "--cores", "1", "results/template/atlas_labels.tsv"]
    run = subprocess.run(command, check=False, env=env, cwd=work, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(pd.read_csv(work / "results/template/atlas_labels.tsv", sep="\t")) == 48
    assert (work / "results/template/wm_mask.nii.gz").exists()
    env.pop("FSLDIR")
    shutil.rmtree(work / "results")
    run = subprocess.run(command, check=False, env=env, cwd=work, capture_output=True, text=True, timeout=180)
    assert run.returncode != 0
    log = (work / "logs/prepare_template/prepare_template.log").read_text()
    assert "$FSLDIR is not set" in log


def test_any_atlas_with_a_labels_tsv_without_fsl(tmp_path):
    """No $FSLDIR: an FA template, an integer atlas of 3 regions and a labels TSV by path (config section template)."""
    fa = np.random.default_rng(1).uniform(0, 1, (6, 6, 6)).astype(np.float32)
    atlas = np.zeros((6, 6, 6), np.int16)
    atlas[:2], atlas[2:4], atlas[4:] = 5, 7, 9
    nib.save(nib.Nifti1Image(fa, AFFINE), tmp_path / "fa.nii.gz")
    nib.save(nib.Nifti1Image(atlas, AFFINE), tmp_path / "atlas.nii.gz")
    labels = tmp_path / "labels.tsv"
    pd.DataFrame({"index": [0, 5, 7, 9], "name": ["background", "a", "b", "c"]}).to_csv(labels, sep="\t", index=False)
    given = {"fa": str(tmp_path / "fa.nii.gz"), "atlas": str(tmp_path / "atlas.nii.gz"), "atlas_labels": str(labels)}
    paths = outputs(tmp_path)
    prepare_template_from_config(given, "ants", fsldir="", **paths)
    written = pd.read_csv(paths["labels_out"], sep="\t")
    assert written["index"].tolist() == [5, 7, 9] and written["name"].tolist() == ["a", "b", "c"]
    np.testing.assert_array_equal(nib.load(paths["wm_mask_out"]).get_fdata() > 0, atlas > 0)
    labels.write_text("index\tname\n5\ta\n7\tb\n")  # region 9 has voxels but no name
    with pytest.raises(InputError, match=r"label value\(s\) \[9\] not in labels.tsv"):
        prepare_template_from_config(given, "ants", fsldir="", **outputs(tmp_path / "again"))


def test_tractseg_template_lands_on_the_fsl_1mm_grid(tmp_path):
    """template.fa: tractseg - TractSeg's MNI FA template (installed with the test extras), resampled to the 1 mm
    MNI152 grid of the JHU atlas; the atlas here is a one-region stand-in on that grid."""
    from dmriscope.template import MNI_1MM_AFFINE, MNI_1MM_SHAPE, tractseg_template

    source = nib.load(tractseg_template())
    atlas = np.zeros(MNI_1MM_SHAPE, np.int16)
    atlas[80:100, 100:120, 80:100] = 1
    nib.save(nib.Nifti1Image(atlas, MNI_1MM_AFFINE), tmp_path / "atlas.nii.gz")
    (tmp_path / "labels.tsv").write_text("index\tname\n1\tcentre\n")
    given = {"fa": "tractseg", "atlas": str(tmp_path / "atlas.nii.gz"), "atlas_labels": str(tmp_path / "labels.tsv")}
    paths = outputs(tmp_path)
    prepare_template_from_config(given, "ants", fsldir="", **paths)
    out = nib.load(paths["fa_out"])
    assert out.shape == MNI_1MM_SHAPE and np.allclose(out.affine, MNI_1MM_AFFINE)
    # the same world point has the same FA in the 1.25 mm source and the 1 mm result (trilinear, a smooth region)
    world = np.array([0.0, -18.0, 8.0, 1.0])
    i_src = np.round(np.linalg.solve(source.affine, world)[:3]).astype(int)
    i_out = np.round(np.linalg.solve(out.affine, world)[:3]).astype(int)
    assert abs(out.get_fdata()[tuple(i_out)] - source.get_fdata()[tuple(i_src)]) < 0.1
    assert 0.2 < out.get_fdata()[out.get_fdata() > 0.05].mean() < 0.5  # a real FA map, in 0..1
