"""DKI on real human diffusion signal: dmriscope's batched fit against dipy's own fit and MRtrix3's (issue 18).

Prints, per acquisition (`dmriscope.dki_validation`: the ISBI 2015 in-vivo voxels from dmipy's wheel, dipy's
small_101D) and per pair of fits, the max and median |difference| of FA, MD (mm^2/s) and MK, and the medians of the
metrics themselves. MRtrix3 columns need Debian's mrtrix3 (``apt-get install mrtrix3``); without it they are left
out and the script says so. Usage::

    .venv/bin/python benchmarks/dki_agreement.py
"""

from __future__ import annotations

import numpy as np

from dmriscope import dki_validation as v


def rows() -> list[tuple]:
    out = []
    for acquisition in (v.isbi2015(), v.small_101d()):
        ours, ours_ols = v.fit_dmriscope(acquisition), v.fit_dmriscope(acquisition, "OLS")
        medians = ", ".join(f"{m} {np.median(ours[m]):.4g}" for m in ("FA", "MD", "MK"))
        out.append((acquisition.name, "medians (dmriscope WLS)", medians))
        pairs = [
            ("WLS: dmriscope vs dipy", v.fit_dipy(acquisition), ours),
            ("OLS: dmriscope vs dipy", v.fit_dipy(acquisition, "OLS"), ours_ols),
        ]
        if v.mrtrix_available():
            pairs += [
                ("OLS: MRtrix3 vs dmriscope", ours_ols, v.fit_mrtrix(acquisition)),
                ("MRtrix3 default IWLS vs dmriscope WLS", ours, v.fit_mrtrix(acquisition, ols=False)),
            ]
        for label, reference, other in pairs:
            cells = [f"{m} {mx:.2g} / {med:.2g}" for m, (mx, med) in v.agreement(reference, other).items()]
            out.append((acquisition.name, label, "; ".join(cells)))
    return out


def main() -> None:
    print("| acquisition | comparison | max / median abs difference (MD in mm^2/s) |")
    print("|---|---|---|")
    for row in rows():
        print("| " + " | ".join(row) + " |")
    if not v.mrtrix_available():
        print("\nMRtrix3 not found (dwi2tensor, tensor2metric): apt-get install mrtrix3 for its columns")


if __name__ == "__main__":
    main()
