"""The tensor store: exact crop/pad offsets, training-only normalisation, and a loader equal to NIfTI loading."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from dmriscope.fold_tensors import fold_tensors
from dmriscope.io import InputError, save_nifti
from dmriscope.normalise import Normaliser, RunningMoments
from dmriscope.tensors import (
    from_grid,
    grid_atlas,
    grid_slices,
    open_dataset,
    read_index,
    stack_tensors,
    to_grid,
)

SHAPE = (7, 6, 5)  # template shape of the toy cohort
GRID = (6, 8, 4)  # crop 7->6, pad 6->8, crop 5->4


def test_paper_and_synthetic_offsets():
    src, dst = grid_slices((182, 218, 182), (180, 224, 224))
    assert src == (slice(1, 181), slice(0, 218), slice(0, 182))
    assert dst == (slice(0, 180), slice(3, 221), slice(21, 203))
    src, dst = grid_slices((38, 46, 38), (36, 48, 48))
    assert src == (slice(1, 37), slice(0, 46), slice(0, 38))
    assert dst == (slice(0, 36), slice(1, 47), slice(5, 43))


def test_to_grid_odd_excess_goes_to_the_high_end():
    volume = np.arange(np.prod((6, 4, 3)), dtype=np.float32).reshape(6, 4, 3) + 1
    out = to_grid(volume, (3, 7, 3), fill=-1)
    # axis 0: 6 -> 3 keeps source slices 1, 2, 3; axis 1: 4 -> 7 puts the volume at 1..4, one pad low, two high
    np.testing.assert_array_equal(out[:, 1:5, :], volume[1:4])
    assert (out[:, 0, :] == -1).all() and (out[:, 5:, :] == -1).all()
    assert out.dtype == volume.dtype


def test_from_grid_inverts_on_the_kept_region():
    rng = np.random.default_rng(0)
    volume = rng.normal(size=SHAPE).astype(np.float32)
    back = from_grid(to_grid(volume, GRID), SHAPE)
    src, _ = grid_slices(SHAPE, GRID)
    np.testing.assert_array_equal(back[src], volume[src])
    kept = np.zeros(SHAPE, bool)
    kept[src] = True
    assert (back[~kept] == 0).all()
    tensor = rng.normal(size=GRID).astype(np.float32)
    _, dst = grid_slices(SHAPE, GRID)
    np.testing.assert_array_equal(to_grid(from_grid(tensor, SHAPE), GRID)[dst], tensor[dst])


def test_running_moments_match_numpy():
    rng = np.random.default_rng(1)
    chunks = [rng.normal(3e-3, 1e-3, size=n) for n in (5, 100, 1, 37)]
    moments = RunningMoments()
    for chunk in chunks:
        moments.update(chunk)
    allv = np.concatenate(chunks)
    assert moments.n == allv.size
    assert np.isclose(moments.mean, allv.mean(), rtol=1e-12)
    assert np.isclose(moments.std, allv.std(), rtol=1e-10)


def make_cohort(tmp_path, n: int = 8, scale: float = 1.0, seed: int = 0) -> dict:
    """Toy template, maps and split on disk; subject s009 is 'unused'."""
    rng = np.random.default_rng(seed)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    fa = np.zeros(SHAPE, np.float32)
    fa[1:6, 1:5, 1:4] = 0.5
    save_nifti(fa, affine, tmp_path / "template_FA.nii.gz")
    sets = ["train"] * 4 + ["val"] * 2 + ["test"] * 2 + ["unused"]
    sexes = ["M", "F", "M", "F", "M", "F", "M", "F", "M"]
    subjects = [f"s{i:03d}" for i in range(1, len(sets) + 1)]
    paths = []
    for subject in subjects:
        path = tmp_path / f"sub-{subject}" / "MD.nii.gz"
        save_nifti(scale * rng.normal(1e-3, 2e-4, size=SHAPE), affine, path)
        paths.append(str(path))
    split = pd.DataFrame({"subject": subjects, "sex": sexes, "age": 25, "age_bin": "22-25", "set": sets})
    split.to_csv(tmp_path / "split.tsv", sep="\t", index=False)
    atlas = np.zeros(SHAPE, np.int16)
    atlas[2:5, 2:4, 1:3] = 3
    save_nifti(atlas, affine, tmp_path / "atlas.nii.gz", dtype=np.int16)
    save_nifti((atlas > 0).astype(np.uint8), affine, tmp_path / "wm.nii.gz", dtype=np.uint8)
    (tmp_path / "labels.tsv").write_text("index\tname\n3\tGenu of corpus callosum\n")
    return {"subjects": subjects, "paths": paths, "sets": sets}


def run_grid_atlas(tmp_path) -> None:
    t = tmp_path
    grid_atlas(
        atlas=t / "atlas.nii.gz",
        labels=t / "labels.tsv",
        wm_mask=t / "wm.nii.gz",
        template=t / "template_FA.nii.gz",
        grid=GRID,
        fa_threshold=0.0,
        out_atlas=t / "out/atlas.npy",
        out_labels=t / "out/atlas_labels.tsv",
        out_wm_mask=t / "out/wm_mask.npy",
        out_brain_mask=t / "out/brain_mask.npy",
    )


def run_stack(tmp_path, cohort: dict, mode: str = "voxel", clip: float | None = None) -> None:
    """stack_tensors, then the holdout split as its one fold (normalise_fold), as the workflow runs them."""
    t = tmp_path
    stack_tensors(
        maps=cohort["paths"],
        subjects=cohort["subjects"],
        split=t / "split.tsv",
        template=t / "template_FA.nii.gz",
        brain_mask=t / "out/brain_mask.npy",
        tensor=t / "out/MD.npy",
        index=t / "out/store_index.tsv",
        smoothness=t / "out/MD_smoothness.tsv",
    )
    fold_tensors(
        tensor=t / "out/MD.npy",
        index=t / "out/store_index.tsv",
        fold=t / "split.tsv",
        brain_mask=t / "out/brain_mask.npy",
        out_index=t / "out/MD_index.tsv",
        out_norm=t / "out/MD_norm.json",
        out_norm_voxels=t / "out/MD_norm.npy",
        mode=mode,
        clip=clip,
    )


def test_grid_atlas_outputs(tmp_path):
    make_cohort(tmp_path)
    run_grid_atlas(tmp_path)
    atlas = np.load(tmp_path / "out/atlas.npy")
    assert atlas.dtype == np.int16 and atlas.shape == GRID
    assert (atlas == 3).sum() == 3 * 2 * 2  # the region lies inside the kept part of the template
    wm = np.load(tmp_path / "out/wm_mask.npy")
    assert wm.dtype == bool and (wm == (atlas > 0)).all()
    brain = np.load(tmp_path / "out/brain_mask.npy")
    fa = np.asarray(nib.load(tmp_path / "template_FA.nii.gz").dataobj)
    np.testing.assert_array_equal(brain, to_grid(fa > 0, GRID))
    assert (tmp_path / "out/atlas_labels.tsv").read_text() == (tmp_path / "labels.tsv").read_text()


def test_stack_writes_grid_maps_index_and_training_norm(tmp_path):
    cohort = make_cohort(tmp_path)
    run_grid_atlas(tmp_path)
    run_stack(tmp_path, cohort)
    store = np.load(tmp_path / "out/MD.npy", mmap_mode="r")
    index = read_index(tmp_path / "out/MD_index.tsv")
    assert store.shape == (8, *GRID) and store.dtype == np.float32
    assert list(index["subject"]) == cohort["subjects"][:8]  # the unused subject is left out
    assert list(index["label"]) == [1, 0] * 4
    brain = np.load(tmp_path / "out/brain_mask.npy")
    train_values = []
    for row in index.itertuples():
        raw = np.asarray(nib.load(cohort["paths"][row.row]).dataobj, dtype=np.float32)
        np.testing.assert_array_equal(store[row.row], to_grid(raw, GRID))
        if row.set == "train":
            train_values.append(to_grid(raw, GRID).astype(np.float64))
    train = np.stack(train_values)
    norm = json.loads((tmp_path / "out/MD_norm.json").read_text())
    assert norm["mode"] == "voxel"
    assert np.isclose(norm["mean"], train[:, brain].mean(), rtol=1e-9)
    assert np.isclose(norm["std"], train[:, brain].std(), rtol=1e-9)
    voxels = np.load(tmp_path / "out/MD_norm.npy")  # per voxel over the 4 training subjects, SDs floored
    floor = np.percentile(train.std(axis=0)[brain], 5)
    assert np.isclose(norm["std_floor"], floor, rtol=1e-6) and floor > 0
    np.testing.assert_allclose(voxels[0][brain], train.mean(axis=0)[brain], rtol=1e-6)
    np.testing.assert_allclose(voxels[1][brain], np.maximum(train.std(axis=0), floor)[brain], rtol=1e-6)
    assert not list((tmp_path / "out").glob(".*part*"))  # nothing half-written left behind


def test_norm_ignores_test_subjects_but_not_training_ones(tmp_path):
    cohort = make_cohort(tmp_path)
    run_grid_atlas(tmp_path)
    run_stack(tmp_path, cohort)
    before = json.loads((tmp_path / "out/MD_norm.json").read_text())
    voxels_before = np.load(tmp_path / "out/MD_norm.npy")
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    test_path = cohort["paths"][cohort["sets"].index("test")]
    save_nifti(np.full(SHAPE, 5.0), affine, test_path)
    run_stack(tmp_path, cohort)
    assert json.loads((tmp_path / "out/MD_norm.json").read_text())["mean"] == before["mean"]
    np.testing.assert_array_equal(np.load(tmp_path / "out/MD_norm.npy"), voxels_before)
    save_nifti(np.full(SHAPE, 5.0), affine, cohort["paths"][0])  # a training subject
    run_stack(tmp_path, cohort)
    assert json.loads((tmp_path / "out/MD_norm.json").read_text())["mean"] != before["mean"]
    assert not np.array_equal(np.load(tmp_path / "out/MD_norm.npy"), voxels_before)


@pytest.mark.parametrize("mode", ["global", "voxel"])
def test_loader_equals_nifti_to_grid_and_normalisation(tmp_path, mode):
    cohort = make_cohort(tmp_path)
    run_grid_atlas(tmp_path)
    run_stack(tmp_path, cohort, mode=mode, clip=1.5)
    out = tmp_path / "out"
    dataset = open_dataset(
        out / "MD.npy", out / "MD_index.tsv", out / "MD_norm.json", out / "brain_mask.npy", ["val", "test"],
        norm_voxels=out / "MD_norm.npy",
    )  # fmt: skip
    norm = json.loads((out / "MD_norm.json").read_text())
    mean, std = np.float32(norm["mean"]), np.float32(norm["std"])
    if mode == "voxel":
        mean, std = np.load(out / "MD_norm.npy")
    fa = nib.load(tmp_path / "template_FA.nii.gz").get_fdata()
    brain = to_grid(fa > 0, GRID)
    clipped = 0
    assert len(dataset) == 4
    for i in range(len(dataset)):
        x, y = dataset[i]
        subject = dataset.index["subject"][i]
        raw = nib.load(cohort["paths"][cohort["subjects"].index(subject)]).get_fdata(dtype=np.float32)
        on_grid = to_grid(raw, GRID)
        z = (on_grid - mean) / std
        clipped += int((np.abs(z[brain]) > 1.5).sum())
        expected = np.where(brain, np.clip(z, -1.5, 1.5), 0)
        assert x.shape == (1, *GRID) and x.dtype == torch.float32
        np.testing.assert_allclose(x[0].numpy(), expected.astype(np.float32), rtol=0, atol=1e-5)  # float32 rounding
        assert (x[0].numpy()[~brain] == 0).all()
        assert float(y) == float(dataset.index["group"][i] == "M")
    assert clipped > 0  # the clip was exercised


def test_dataset_survives_pickling_for_workers(tmp_path):
    import pickle

    cohort = make_cohort(tmp_path)
    run_grid_atlas(tmp_path)
    run_stack(tmp_path, cohort)
    out = tmp_path / "out"
    dataset = open_dataset(
        out / "MD.npy", out / "MD_index.tsv", out / "MD_norm.json", out / "brain_mask.npy", ["train"],
        norm_voxels=out / "MD_norm.npy",
    )  # fmt: skip
    first = dataset[0][0]
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._store is None
    torch.testing.assert_close(clone[0][0], first, rtol=0, atol=0)


def test_bad_inputs_name_the_file(tmp_path):
    cohort = make_cohort(tmp_path)
    run_grid_atlas(tmp_path)
    save_nifti(np.zeros((3, 3, 3)), np.eye(4), cohort["paths"][2])
    with pytest.raises(InputError, match="s003"):
        run_stack(tmp_path, cohort)
    with pytest.raises(InputError, match="maps for"):
        stack_tensors(
            maps=cohort["paths"][:2],
            subjects=cohort["subjects"],
            split=tmp_path / "split.tsv",
            template=tmp_path / "template_FA.nii.gz",
            brain_mask=tmp_path / "out/brain_mask.npy",
            tensor=tmp_path / "a.npy",
            index=tmp_path / "a.tsv",
            smoothness=tmp_path / "a_smoothness.tsv",
        )
    assert not (tmp_path / "out/MD.npy").exists()


def test_full_disk_stops_before_writing_and_stale_temporaries_go(tmp_path, monkeypatch):
    """A store that does not fit stops with the sizes and the folder, not with SIGBUS; a temporary that a killed
    job left behind is removed by the next run."""
    import shutil

    from dmriscope import tensors

    cohort = make_cohort(tmp_path)
    run_grid_atlas(tmp_path)
    stale = tmp_path / "out" / ".MD.abc123.part.npy"
    stale.write_bytes(b"x" * 1000)
    real = shutil.disk_usage
    monkeypatch.setattr(tensors.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    with pytest.raises(InputError, match=r"MD.npy: needs .* GiB, only 0.00 GiB free"):
        run_stack(tmp_path, cohort)
    assert not stale.exists() and not list((tmp_path / "out").glob(".MD*part*"))
    assert not (tmp_path / "out/MD.npy").exists()


def test_normaliser_zero_outside_mask():
    norm = Normaliser(mean=2.0, std=4.0)
    mask = np.array([[True, False]])
    np.testing.assert_array_equal(norm.apply(np.array([[6.0, 6.0]]), mask), [[1.0, 0.0]])


def test_each_fold_normalises_with_its_own_training_subjects(tmp_path):
    """Two folds of one store: each fold's statistics are those of its training rows, computed independently."""
    cohort = make_cohort(tmp_path)
    run_grid_atlas(tmp_path)
    run_stack(tmp_path, cohort)
    out = tmp_path / "out"
    split = pd.read_csv(tmp_path / "split.tsv", sep="\t")
    swapped = split.copy()
    swapped.loc[split["set"] == "train", "set"] = "test"
    swapped.loc[split["set"] == "test", "set"] = "train"
    swapped.to_csv(tmp_path / "fold1.tsv", sep="\t", index=False)
    fold_tensors(
        tensor=out / "MD.npy",
        index=out / "store_index.tsv",
        fold=tmp_path / "fold1.tsv",
        brain_mask=out / "brain_mask.npy",
        out_index=out / "fold1_index.tsv",
        out_norm=out / "fold1_norm.json",
        out_norm_voxels=out / "fold1_norm.npy",
    )
    index = read_index(out / "fold1_index.tsv")
    store, brain = np.load(out / "MD.npy"), np.load(out / "brain_mask.npy")
    train = store[index.loc[index["set"] == "train", "row"]].astype(np.float64)
    assert sorted(index.loc[index["set"] == "train", "subject"]) == ["s007", "s008"]
    norm = json.loads((out / "fold1_norm.json").read_text())
    assert np.isclose(norm["mean"], train[:, brain].mean(), rtol=1e-9)
    assert norm["mean"] != json.loads((out / "MD_norm.json").read_text())["mean"]
    np.testing.assert_allclose(np.load(out / "fold1_norm.npy")[0][brain], train.mean(axis=0)[brain], rtol=1e-6)
    swapped[swapped["subject"] != "s002"].to_csv(tmp_path / "fold2.tsv", sep="\t", index=False)
    with pytest.raises(InputError, match="fold2.tsv: subject s002"):
        fold_tensors(
            tensor=out / "MD.npy",
            index=out / "store_index.tsv",
            fold=tmp_path / "fold2.tsv",
            brain_mask=out / "brain_mask.npy",
            out_index=out / "f2.tsv",
            out_norm=out / "f2.json",
            out_norm_voxels=out / "f2.npy",
        )
