"""dmriscope.tensor against dipy: the same arrays bit for bit (np.array_equal), so the fit and the phantom did not
change when they stopped importing dipy.reconst.dti; and the gradient files read as dipy reads them."""

from __future__ import annotations

import numpy as np
import pytest
from dipy.core.gradients import gradient_table
from dipy.io.gradients import read_bvals_bvecs
from dipy.reconst import dki, dti

from dmriscope import tensor
from dmriscope.cohort.gradients import load_hcp_scheme
from dmriscope.shells import fsl_bvecs, read_fsl_table


def random_tensors(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, 3) symmetric tensors: positive definite, some with repeated or zero or negative eigenvalues."""
    q, _ = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    evals = rng.uniform(-2e-4, 3e-3, size=(n, 3))
    evals[: n // 4, 1] = evals[: n // 4, 2]  # a repeated pair
    evals[n // 4 : n // 4 + 3] = 0.0  # all zero: FA must be 0, not NaN
    return np.einsum("nij,nj,nkj->nik", q, evals, q)


def test_design_matrix_equals_dipy_on_hcp_scheme_with_b0s():
    bvals, bvecs = load_hcp_scheme()
    bvals = bvals.copy()
    bvals[bvals == 0] = 5.0  # scanner b0s: b = 5 with a zero vector, which gradient_table zeroes
    expected = dki.design_matrix(gradient_table(bvals, bvecs=bvecs))
    assert np.array_equal(tensor.dki_design(bvals, bvecs), expected)


def test_tensor_functions_equal_dipy():
    rng = np.random.default_rng(3)
    D = random_tensors(400, rng)
    lower = dti.lower_triangular(D)
    assert np.array_equal(tensor.from_lower_triangular(lower), dti.from_lower_triangular(lower))
    for floor in (0.0, 1e-5):
        ours = tensor.decompose_tensor(D, min_diffusivity=floor)
        theirs = dti.decompose_tensor(D, min_diffusivity=floor)
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))
    evals = dti.decompose_tensor(D)[0]
    assert np.array_equal(tensor.fractional_anisotropy(evals), dti.fractional_anisotropy(evals))
    assert np.array_equal(tensor.mean_diffusivity(evals), dti.mean_diffusivity(evals))
    assert not np.isnan(tensor.fractional_anisotropy(evals)).any()
    single = tensor.decompose_tensor(D[0])  # dipy's one-voxel branch
    assert all(np.array_equal(a, b) for a, b in zip(single, dti.decompose_tensor(D[0])))


@pytest.mark.parametrize("sep", [" ", "\t", ","])
@pytest.mark.parametrize("rows", [True, False])
def test_gradient_files_read_as_dipy_reads_them(tmp_path, sep, rows):
    bvals, bvecs = load_hcp_scheme()
    bval, bvec = tmp_path / "dwi.bval", tmp_path / "dwi.bvec"
    bval.write_text(sep.join(f"{b:g}" for b in bvals) + "\n")
    table = bvecs.T if rows else bvecs  # FSL's 3 rows, or 3 columns
    bvec.write_text("\n".join(sep.join(f"{v:.6f}" for v in row) for row in table) + "\n")
    expected_bvals, expected_bvecs = read_bvals_bvecs(str(bval), str(bvec))
    assert np.array_equal(read_fsl_table(bval), expected_bvals)
    assert np.array_equal(fsl_bvecs(read_fsl_table(bvec)), expected_bvecs)


def test_a_bvec_table_without_three_rows_is_refused(tmp_path):
    bvec = tmp_path / "dwi.bvec"
    bvec.write_text("0 1\n1 0\n")
    with pytest.raises(ValueError, match="three rows"):
        fsl_bvecs(read_fsl_table(bvec))
