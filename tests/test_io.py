"""dmriscope.io.save_nifti at gzip level 0 (the temporary DWI): the same NIfTI bytes inside the .gz as nibabel's
own level-1 save, a valid gzip stream, and much larger (nothing compressed)."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np

from dmriscope.io import save_nifti


def test_level_0_gzip_holds_the_same_nifti_as_nibabels_save(tmp_path):
    data = (np.random.default_rng(0).random((12, 10, 8, 5)) * 1000).astype(np.int16)
    affine = np.diag([1.25, 1.25, 1.25, 1.0])
    save_nifti(data, affine, tmp_path / "level1.nii.gz", dtype=np.int16)
    save_nifti(data, affine, tmp_path / "level0.nii.gz", dtype=np.int16, compresslevel=0)
    raw = [gzip.decompress((tmp_path / f"level{n}.nii.gz").read_bytes()) for n in (0, 1)]
    assert raw[0] == raw[1]
    assert (tmp_path / "level0.nii.gz").stat().st_size > (tmp_path / "level1.nii.gz").stat().st_size
    img = nib.load(tmp_path / "level0.nii.gz")
    assert np.array_equal(np.asarray(img.dataobj), data) and np.allclose(img.affine, affine)
