"""The synthetic cohort: mixture tensors and signal against dipy, the phantom atlas, planted effects, noise, and the
foundation acceptance (a noiseless subject fitted with dmriscope.dki gives back the true FA, MD, MK)."""

from __future__ import annotations

import copy
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from dipy.core.gradients import gradient_table
from dipy.reconst.dki import dki_prediction
from dipy.sims.voxel import multi_tensor_dki
from scipy import stats

from dmriscope.cohort import microstructure as ms
from dmriscope.cohort import phantom as ph
from dmriscope.cohort import synthetic as sy
from dmriscope.cohort import synthetic_template as st
from dmriscope.cohort.gradients import load_hcp_scheme
from dmriscope.config import load_config
from dmriscope.io import InputError

SEED = 11


def config(project_root, name: str) -> dict:
    cfg = yaml.safe_load((project_root / name).read_text())
    return load_config(cfg)


@pytest.fixture(scope="module")
def ci(project_root) -> dict:
    return config(project_root, "configs/ci.yaml")


@pytest.fixture(scope="module")
def phantoms(project_root, ci) -> dict[str, ph.Phantom]:
    default = config(project_root, "config.yaml")["synthetic"]
    return {
        name: ph.build_phantom(tuple(syn["template_shape"]), syn["voxel_mm"])
        for name, syn in (("default", default), ("ci", ci["synthetic"]))
    }


@pytest.fixture(scope="module")
def ci_texture(ci) -> np.ndarray:
    syn = ci["synthetic"]
    return ph.texture_field(tuple(syn["template_shape"]), syn["voxel_mm"], sy.TEXTURE_SMOOTHNESS_MM, SEED)


@pytest.fixture(scope="module")
def gtab():
    bvals, bvecs = load_hcp_scheme()
    return gradient_table(bvals, bvecs=bvecs)


def random_voxels(n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """WM-like, GM-like and CSF-like voxels with random directions."""
    e = rng.normal(size=(n, 3))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    f = rng.uniform(0.1, 0.8, n)
    f_iso = rng.choice([0.0, 0.3, 1.0], n)
    d_iso = np.where(f_iso == 1.0, ms.D_FREE, 0.4e-3)
    return f, f_iso, d_iso, e


def test_mixture_tensors_equal_dipy_multi_tensor_dki(gtab):
    f, f_iso, d_iso, e = random_voxels(8, np.random.default_rng(0))
    fractions, tensors = ms.compartments(f, f_iso, d_iso, e)
    D, W = ms.mixture_tensors(fractions, tensors)
    for n in range(len(f)):
        keep = fractions[n] > 0
        mevals = [
            np.linalg.eigvalsh(t)[[2, 0, 1]] if c < 2 else np.linalg.eigvalsh(t) for c, t in enumerate(tensors[n])
        ]
        _, dt, kt = multi_tensor_dki(
            gtab, np.asarray(mevals)[keep], angles=[e[n]] * keep.sum(), fractions=100 * fractions[n, keep], snr=None
        )
        np.testing.assert_allclose(ms.lower_triangular(D[n : n + 1])[0], dt, rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(W[n], kt, rtol=1e-9, atol=1e-9)


def test_signal_equals_dki_prediction(gtab):
    f, f_iso, d_iso, e = random_voxels(6, np.random.default_rng(1))
    D, W = ms.mixture_tensors(*ms.compartments(f, f_iso, d_iso, e))
    s0 = np.array([1000.0, 1100.0, 2000.0, 1000.0, 500.0, 1500.0])
    expected = dki_prediction(ms.dki_params(D, W), gtab, S0=s0)
    np.testing.assert_allclose(ms.dki_signal(D, W, s0, *load_hcp_scheme(), chunk=4), expected, rtol=1e-6)


def test_true_metrics_follow_the_intra_axonal_fraction():
    f = np.array([0.45, 0.55, 0.65])
    D, W = ms.mixture_tensors(*ms.compartments(f, np.zeros(3), np.full(3, ms.D_FREE), np.tile([1.0, 0, 0], (3, 1))))
    maps = ms.scalar_maps(D, W, 0.0, 3.0)
    assert np.all(np.diff(maps["FA"]) > 0.03) and np.all(np.diff(maps["MD"]) < 0) and np.all(np.diff(maps["MK"]) > 0)
    assert 0.5 < maps["FA"][0] < maps["FA"][2] < 0.95 and 0.5e-3 < maps["MD"][2] < maps["MD"][0] < 1.2e-3


@pytest.mark.parametrize("name, min_voxels", [("default", 30), ("ci", 10)])
def test_atlas_has_48_named_symmetric_regions(phantoms, name, min_voxels):
    phantom = phantoms[name]
    atlas, points = phantom.atlas, ph.grid_points(phantom.atlas.shape, phantom.affine)
    sizes = np.bincount(atlas.ravel(), minlength=49)[1:]
    assert len(sizes) == 48 and sizes.min() >= min_voxels, sizes
    assert np.array_equal(atlas > 0, phantom.tissue == ms.WM)
    mirror = np.array([ph.mirror_label(i) for i in range(49)])
    assert np.array_equal(mirror[atlas[::-1]], atlas)
    centroid = {i: points[atlas == i].mean(axis=0) for i in range(1, 49)}
    for right in range(7, 48, 2):
        assert centroid[right][0] > 5 and centroid[right + 1][0] < -5
    assert all(abs(centroid[i][0]) < 1e-6 for i in range(1, 7))
    assert centroid[3][1] > centroid[4][1] > centroid[5][1]  # genu, body, splenium: anterior to posterior
    assert centroid[7][2] < centroid[19][2] < centroid[25][2]  # CST (brainstem) below PLIC below SCR
    names = st.region_names()
    assert list(names["index"]) == list(range(1, 49)) and names["name"][2] == "Genu of corpus callosum"


def test_fibre_directions_follow_the_tracts(phantoms):
    phantom = phantoms["default"]
    wm = phantom.tissue == ms.WM
    labels, points = phantom.atlas[wm], ph.grid_points(phantom.atlas.shape, phantom.affine)[wm]
    directions = ph.fibre_directions(labels, phantom.tissue[wm], points)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, rtol=1e-12)
    for region, axis in ((4, 0), (7, 2), (25, 2), (41, 1), (35, 1)):  # CC body LR, CST + SCR SI, SLF + cingulum AP
        assert np.abs(directions[labels == region, axis]).mean() > 0.8, region


def test_template_fa_by_tissue(phantoms, ci_texture, ci):
    phantom = phantoms["ci"]
    fa = sy.template_fa(phantom, ci_texture, ci["synthetic"]["texture_sd"])
    assert fa.dtype == np.float32 and fa.min() >= 0 and fa.max() < 1
    assert fa[phantom.tissue == ms.WM].mean() > 0.6
    assert 0.1 < fa[phantom.tissue == ms.GM].mean() < 0.3
    assert np.all(fa[phantom.tissue <= ms.CSF] < 1e-6)


@pytest.fixture(scope="module")
def cohort(phantoms, ci_texture, ci) -> dict:
    """16 subjects (8 M, 8 F, age 28) at ci settings with large planted effects; truth only (no signal)."""
    syn = copy.deepcopy(ci["synthetic"])
    syn["sex_effects"] = [{"region": 25, "size": 3.0}, {"region": 5, "size": -3.0}]
    syn["age_effects"] = []
    rows = []
    for i in range(16):
        sex = "MF"[i % 2]
        anatomy = sy.subject_anatomy(f"c{i}", sex, 28.0, phantoms["ci"], ci_texture, syn, SEED, ci["dki"])
        labels = anatomy["labels"]
        fa = np.array([anatomy["truth"]["FA"][labels == r].mean() for r in range(1, 49)])
        edge = (
            anatomy["mask"][[0, -1]].any() or anatomy["mask"][:, [0, -1]].any() or anatomy["mask"][..., [0, -1]].any()
        )
        rows.append({"sex": sex, "scale": anatomy["params"]["scale"], "voxels": anatomy["mask"].sum(), "fa": fa,
                     "edge": edge})  # fmt: skip
    return {"synthetic": syn, "rows": pd.DataFrame(rows)}


def test_males_are_larger_and_brains_fit_the_native_grid(cohort):
    rows, syn = cohort["rows"], cohort["synthetic"]
    male, female = rows[rows["sex"] == "M"], rows[rows["sex"] == "F"]
    assert male["voxels"].mean() > female["voxels"].mean()
    log_ratio = np.log(male["scale"]).mean() - np.log(female["scale"]).mean()
    se = syn["scale_sd"] * np.sqrt(1 / len(male) + 1 / len(female))
    assert abs(log_ratio - np.log(syn["male_scale"])) < 4 * se
    assert not rows["edge"].any()


def expected_fa_difference(region: int, delta_f: float) -> float:
    f = ph.spec_of(region).f_mean + np.array([delta_f, -delta_f]) / 2
    D, W = ms.mixture_tensors(*ms.compartments(f, np.zeros(2), np.full(2, ms.D_FREE), np.tile([0, 0, 1.0], (2, 1))))
    fa = ms.scalar_maps(D, W, 0.0, 3.0)["FA"]
    return float(fa[0] - fa[1])


def test_planted_sex_effects_show_in_true_fa_and_nowhere_else(cohort):
    rows, syn = cohort["rows"], cohort["synthetic"]
    fa = np.stack(rows["fa"].to_numpy())
    male, female = fa[rows["sex"] == "M"], fa[rows["sex"] == "F"]
    difference = male.mean(0) - female.mean(0)
    se = np.sqrt(male.var(0, ddof=1) / len(male) + female.var(0, ddof=1) / len(female))
    planted = {e["region"]: e["size"] for e in syn["sex_effects"]}
    for region, size in planted.items():
        expected = expected_fa_difference(region, size * syn["subject_sd"])
        observed = difference[region - 1]
        assert np.sign(observed) == np.sign(size) and abs(observed - expected) < 4 * se[region - 1], (region, observed)
    others = np.array([r for r in range(1, 49) if r not in planted]) - 1
    assert np.all(np.abs(difference[others] / se[others]) < 4)


def test_region_fractions_add_sex_and_age_effects():
    syn = {"subject_sd": 0.04, "sex_effects": [{"region": 3, "size": 2.0}], "age_effects": [{"region": 11, "size": -1}]}
    male = sy.region_fractions("M", 42.0, syn, np.random.default_rng(5))
    female = sy.region_fractions("F", 22.0, syn, np.random.default_rng(5))
    np.testing.assert_allclose(male[3] - female[3], 2.0 * 0.04)
    np.testing.assert_allclose(male[11] - female[11], -1 * 0.04 * 2)
    np.testing.assert_allclose(np.delete(male - female, [3, 11]), 0.0)


@pytest.fixture(scope="module")
def ci_subject(phantoms, ci_texture, ci) -> dict:
    anatomy = sy.subject_anatomy("s1", "F", 30.0, phantoms["ci"], ci_texture, ci["synthetic"], SEED, ci["dki"])
    bvals, bvecs = load_hcp_scheme()
    return {"anatomy": anatomy, "dwi": sy.subject_dwi(anatomy, ci["synthetic"], SEED, bvals, bvecs), "bvals": bvals}


def test_reruns_are_identical_and_subjects_differ(ci_subject, phantoms, ci_texture, ci):
    bvals, bvecs = load_hcp_scheme()

    def dwi(subject: str, seed: int) -> np.ndarray:
        anatomy = sy.subject_anatomy(subject, "F", 30.0, phantoms["ci"], ci_texture, ci["synthetic"], seed, ci["dki"])
        return sy.subject_dwi(anatomy, ci["synthetic"], seed, bvals, bvecs)

    assert np.array_equal(dwi("s1", SEED), ci_subject["dwi"])
    assert not np.array_equal(dwi("s2", SEED), ci_subject["dwi"])
    assert not np.array_equal(dwi("s1", SEED + 1), ci_subject["dwi"])


def test_rician_noise_matches_snr(ci_subject, ci):
    anatomy, dwi, bvals = ci_subject["anatomy"], ci_subject["dwi"], ci_subject["bvals"]
    sigma = ms.S0_WM / ci["synthetic"]["snr"]
    assert anatomy["params"]["sigma"] == sigma
    wm_b0 = dwi[anatomy["labels"] > 0][:, bvals == 0]  # homogeneous: every WM b0 is S0_WM = 1000 before noise
    assert abs(wm_b0.std(axis=1, ddof=1).mean() / sigma - 1) < 0.05
    rician_mean = ms.S0_WM + sigma**2 / (2 * ms.S0_WM)  # high-SNR expansion of the Rician mean
    assert abs(wm_b0.mean() - rician_mean) < 4 * sigma / np.sqrt(wm_b0.size)
    background = dwi[~anatomy["mask"]]
    assert abs(background.mean() / (sigma * np.sqrt(np.pi / 2)) - 1) < 0.02  # Rayleigh


def test_add_rician_noise_at_low_snr():
    signal = np.full((20, 20, 20, 30), 50.0, dtype=np.float32)
    sy.add_rician_noise(signal, 25.0, np.random.default_rng(3), chunk=7)
    assert abs(signal.mean() / stats.rice.mean(2.0, scale=25.0) - 1) < 0.01
    assert abs(signal.std() / stats.rice.std(2.0, scale=25.0) - 1) < 0.02


@pytest.fixture(scope="module")
def template(tmp_path_factory, ci) -> dict:
    """The ci template written by `prepare_template`: paths by output name."""
    folder = tmp_path_factory.mktemp("template")
    names = ("fa", "atlas", "labels", "wm_mask", "tissue", "texture", "planted")
    files = {n: str(folder / f"{n}.{'tsv' if n in ('labels', 'planted') else 'nii.gz'}") for n in names}
    st.prepare_template(*files.values(), ci["synthetic"], SEED)
    return files


def write_participants(tmp_path, rows: list[dict]) -> str:
    path = tmp_path / "participants.tsv"
    pd.DataFrame(rows, columns=["subject", "sex", "age", "age_bin"]).to_csv(path, sep="\t", index=False)
    return str(path)


def synthesize(tmp_path, template: dict, participants: str, subject: str, synthetic: dict, dki: dict) -> dict:
    raw = tmp_path / "raw"
    out = {"dwi": raw / "dwi.nii.gz", "bval": raw / "dwi.bval", "bvec": raw / "dwi.bvec", "mask": raw / "mask.nii.gz"}
    truth = [str(raw / f"true_{m}.nii.gz") for m in sy.METRICS]
    sy.synthesize_subject(
        subject, participants, template["atlas"], template["tissue"], template["texture"], *map(str, out.values()),
        truth, str(raw / "params.json"), synthetic, SEED, dki,
    )  # fmt: skip
    return {**out, "truth": truth, "params": raw / "params.json"}


def test_template_files(template, ci):
    syn = ci["synthetic"]
    atlas = nib.load(template["atlas"])
    assert atlas.get_data_dtype() == np.int16 and atlas.shape == tuple(syn["template_shape"])
    assert np.allclose(np.diag(atlas.affine)[:3], syn["voxel_mm"])
    labels = pd.read_csv(template["labels"], sep="\t")
    assert list(labels.columns) == ["index", "name"] and len(labels) == 48
    wm = nib.load(template["wm_mask"]).get_fdata() > 0
    assert np.array_equal(wm, np.asarray(atlas.dataobj) > 0)
    planted = pd.read_csv(template["planted"], sep="\t")
    assert len(planted) == len(syn["sex_effects"]) + len(syn["age_effects"])
    assert set(planted["effect"]) == {"sex", "age"}
    assert list(planted["region"][planted["effect"] == "sex"]) == [e["region"] for e in syn["sex_effects"]]


@pytest.mark.parametrize("samples", [1, 2], ids=["voxel-centres", "partial-volume"])
def test_noiseless_subject_fits_back_to_the_truth(tmp_path, template, ci, samples):
    from dmriscope.dki import fit_dki_files

    syn = {**ci["synthetic"], "noiseless": True, "partial_volume_samples": samples}
    participants = write_participants(tmp_path, [{"subject": "n1", "sex": "M", "age": "", "age_bin": "31-37"}])
    files = synthesize(tmp_path, template, participants, "n1", syn, ci["dki"])
    dwi = nib.load(files["dwi"])
    assert dwi.shape[3] == 288 and dwi.get_data_dtype() == np.float32
    assert np.loadtxt(files["bval"]).shape == (288,) and np.loadtxt(files["bvec"]).shape == (3, 288)
    params = json.loads(files["params"].read_text())
    assert params["age"] == 34.0 and params["sex"] == "M" and params["sigma"] == 0.0 and len(params["f"]) == 48
    fitted = {m: str(tmp_path / f"fit_{m}.nii.gz") for m in sy.METRICS}
    fit_dki_files(files["dwi"], files["bval"], files["bvec"], files["mask"], fitted, tmp_path / "fit.json", ci["dki"])
    brain = nib.load(files["mask"]).get_fdata() > 0
    truth = {m: nib.load(p).get_fdata() for m, p in zip(sy.METRICS, files["truth"])}
    wm = brain & (truth["FA"] > 0.4)  # white matter (GM FA ~0.17, CSF 0)
    assert wm.sum() > 1000
    for metric, tolerance in (("FA", 1e-3), ("MD", 1e-6), ("MK", 1e-2)):
        error = np.abs(nib.load(fitted[metric]).get_fdata() - truth[metric])[wm]
        assert error.max() < tolerance, (metric, error.max())


def test_noisy_subject_is_written_as_rounded_int16(tmp_path, template, ci, ci_subject):
    participants = write_participants(tmp_path, [{"subject": "s1", "sex": "F", "age": 30, "age_bin": ""}])
    files = synthesize(tmp_path, template, participants, "s1", ci["synthetic"], ci["dki"])
    dwi = nib.load(files["dwi"])
    assert dwi.get_data_dtype() == np.int16 and json.loads(files["params"].read_text())["dwi_dtype"] == "int16"
    assert np.abs(np.asarray(dwi.dataobj) - ci_subject["dwi"]).max() <= 0.5  # same subject as the in-memory one
    truth = nib.load(files["truth"][0]).get_fdata()
    assert np.array_equal(truth, ci_subject["anatomy"]["truth"]["FA"])


def test_bad_participant_row_names_the_subject(tmp_path, ci):
    participants = write_participants(tmp_path, [{"subject": "b1", "sex": "X", "age": 30, "age_bin": ""}])
    with pytest.raises(InputError, match="subject b1 has sex 'X'"):
        synthesize(
            tmp_path, {"atlas": "a", "tissue": "t", "texture": "x"}, participants, "b1", ci["synthetic"], ci["dki"]
        )


def test_build_participants_draws_or_passes_the_table_through(tmp_path, ci):
    drawn = tmp_path / "drawn.tsv"
    st.build_participants(["a1", "a2", "a3", "a4"], ci["cohort"], str(drawn))
    table = pd.read_csv(drawn, sep="\t", dtype=str)
    assert list(table["subject"]) == ["a1", "a2", "a3", "a4"] and set(table["sex"]) <= {"M", "F"}
    given = write_participants(tmp_path, [{"subject": "sub-g1", "sex": "f", "age": 24, "age_bin": ""},
                                          {"subject": "g2", "sex": "X", "age": 30, "age_bin": ""}])  # fmt: skip
    out = tmp_path / "out.tsv"
    st.build_participants(["g1", "g2"], {**ci["cohort"], "participants": given}, str(out))
    table = pd.read_csv(out, sep="\t", dtype=str, keep_default_na=False)
    assert list(table["subject"]) == ["g1", "g2"] and list(table["sex"]) == ["f", "X"]  # rows validated per subject


def test_native_voxel_size_other_than_the_templates(phantoms, ci_texture, ci):
    """synthetic.native_voxel_mm (HCP: 1.25 mm DWI on a 1 mm template): the native grid has that voxel, covers the
    same field of view, and the same subject's brain has the same physical volume (within partial-voluming)."""
    anatomies = {}
    for voxel in (None, 4.0):  # ci's template is 6 mm
        syn = {**ci["synthetic"], "native_voxel_mm": voxel}
        anatomies[voxel] = sy.subject_anatomy("s1", "F", 30.0, phantoms["ci"], ci_texture, syn, SEED, ci["dki"])
    coarse, fine = anatomies[None], anatomies[4.0]
    assert np.allclose(np.diag(fine["affine"])[:3], 4.0) and np.allclose(np.diag(coarse["affine"])[:3], 6.0)
    fov = [np.array(a["mask"].shape) * np.diag(a["affine"])[:3] for a in (coarse, fine)]
    assert np.all(np.abs(fov[0] - fov[1]) <= 2 * 6.0)  # the padding rounds to whole voxels on each side
    volumes = [a["mask"].sum() * abs(np.linalg.det(a["affine"][:3, :3])) for a in (coarse, fine)]
    assert abs(volumes[1] / volumes[0] - 1) < 0.1, volumes
