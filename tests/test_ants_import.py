"""`dmriscope.registration.import_ants` leaves out antspyx's unused subpackages and changes no registration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from dmriscope.io import save_nifti

SCRIPT = """
import sys
if sys.argv[1] == "full":
    import ants  # the whole package first: import_ants then returns it as it is
from dmriscope.registration import UNUSED_ANTS_PACKAGES, import_ants, register_fa
ants = import_ants()
if sys.argv[1] == "placeholders":
    heavy = {"sklearn", "matplotlib", "statsmodels"} & set(sys.modules)
    assert not heavy, sorted(heavy)
    assert not any(f"ants.{name}" in sys.modules or hasattr(ants, name) for name in UNUSED_ANTS_PACKAGES)
else:
    assert {"sklearn", "statsmodels"} <= set(sys.modules) and hasattr(ants, "plot") and hasattr(ants, "quantile")
register_fa(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7], seed=1, threads=1)
import ants.plotting  # still importable afterwards
import ants.math
assert callable(ants.plotting.plot) and callable(ants.math.quantile)
"""


def test_registration_is_unchanged_without_the_unused_subpackages(tmp_path):
    from test_registration import AFFINE, deform, phantom_fa

    template, moving = tmp_path / "template.nii.gz", tmp_path / "moving.nii.gz"
    save_nifti(phantom_fa(), AFFINE, template)
    save_nifti(deform(phantom_fa()), AFFINE, moving)
    outputs = {}
    for mode in ("full", "placeholders"):
        out = [tmp_path / mode / name for name in ("fa.nii.gz", "affine.mat", "warp.nii.gz", "qc.tsv")]
        subprocess.run([sys.executable, "-c", SCRIPT, mode, str(moving), str(template), *map(str, out)], check=True)
        outputs[mode] = out
    for full, placeholders in zip(outputs["full"][::2], outputs["placeholders"][::2]):
        assert np.array_equal(np.asarray(nib.load(full).dataobj), np.asarray(nib.load(placeholders).dataobj))
    assert Path(outputs["full"][3]).read_text() == Path(outputs["placeholders"][3]).read_text()
