"""Benchmark the batched DKI fit (dmriscope.dki) against dipy's own DiffusionKurtosisModel, and its peak memory.

    .venv/bin/python benchmarks/dki_fit.py                      # speed + memory on an HCP-size image (~4.2 GB .nii)
    .venv/bin/python benchmarks/dki_fit.py --shape 64 64 40 288 --gzip   # memory on a smaller .nii.gz

Speed: noisy signals at HCP's scheme (two-compartment DKI voxels, Rician noise, SNR 20); dipy fits the first
`--dipy-voxels`, the batched fit all `--batched-voxels`; both WLS. Memory: a synthetic 4D float32 image of `--shape`
with an ellipsoid brain mask (HCP-like: ~27% of the grid) is fitted by `fit_dki_files` in a fresh process, whose peak
RSS (VmHWM) is compared with the same process after imports only and with the model in dmriscope.dki's docstring.
Goal: >= 100x dipy (voxels per CPU second, one BLAS thread), and an HCP-size subject under 4 GB.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.openers import Opener
from threadpoolctl import threadpool_limits

CFG = {
    "fit_method": "WLS",
    "bvals": [0, 1000, 2000, 3000],
    "min_kurtosis": 0.0,
    "max_kurtosis": 3.0,
    "chunk_voxels": 2000,
}


def simulate(n_unique: int, n_total: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """bvals (g,), bvecs (g, 3) and n_total noisy signals (n_total, g): n_unique DKI voxels tiled, fresh noise each."""
    from dipy.core.gradients import gradient_table
    from dipy.sims.voxel import multi_tensor_dki

    from dmriscope.cohort.gradients import load_hcp_scheme

    bvals, bvecs = load_hcp_scheme()
    gtab = gradient_table(bvals, bvecs=bvecs)
    rng = np.random.default_rng(seed)
    clean = np.empty((n_unique, len(bvals)))
    for i in range(n_unique):
        mevals = np.array([[rng.uniform(1.5e-3, 2.2e-3), 3e-4, 3e-4], [rng.uniform(1e-3, 2e-3), 8e-4, 8e-4]])
        angles = [(rng.uniform(0, 180), rng.uniform(0, 360)) for _ in range(2)]
        f = rng.uniform(20, 80)
        clean[i] = multi_tensor_dki(gtab, mevals, S0=1000.0, angles=angles, fractions=[f, 100 - f], snr=None)[0]
    tiled = np.resize(clean, (n_total, len(bvals)))
    sigma = 1000.0 / 20.0
    noisy = np.hypot(tiled + sigma * rng.standard_normal(tiled.shape), sigma * rng.standard_normal(tiled.shape))
    return bvals, bvecs, noisy


def _timed(fit) -> tuple[object, float, float]:
    """fit() -> (its result, wall seconds, this process's CPU seconds: the honest figure on a shared machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fit()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def speed_table(n_dipy: int, n_batched: int, chunks: list[int]) -> list[tuple]:
    """Rows (method, voxels, wall s, CPU s, voxels per CPU s, speed-up vs dipy's fit, speed-up vs dipy's fit + maps,
    max |difference| vs dipy) for dipy's fit, dipy's fit with its FA/MD/MK maps, and the batched fit (which
    returns the maps) at each chunk size."""
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dki import DiffusionKurtosisModel

    from dmriscope import dki

    bvals, bvecs, signals = simulate(min(n_dipy, 2000), max(n_dipy, n_batched))
    model = DiffusionKurtosisModel(gradient_table(bvals, bvecs=bvecs), fit_method="WLS")
    ref, wall, cpu = _timed(lambda: model.fit(signals[:n_dipy]))
    ref_maps, map_wall, map_cpu = _timed(
        lambda: {"FA": ref.fa, "MD": ref.md, "MK": ref.mk(min_kurtosis=0.0, max_kurtosis=3.0)}
    )  # dipy computes them per voxel, after the fit: part of what the batched fit does
    rows = [
        ("dipy DiffusionKurtosisModel WLS: fit", n_dipy, wall, cpu, {}),
        ("dipy DiffusionKurtosisModel WLS: fit + FA, MD, MK", n_dipy, wall + map_wall, cpu + map_cpu, {}),
    ]
    design = dki.make_design(bvals, bvecs)
    dki.fit_signals(signals[: max(chunks)], design, chunk_voxels=max(chunks))  # warm-up: first-call costs untimed
    for chunk in chunks:
        ours, wall, cpu = _timed(partial(dki.fit_signals, signals[:n_batched], design, chunk_voxels=chunk))
        diff = {m: float(np.abs(ours[m][:n_dipy] - ref_maps[m]).max()) for m in ref_maps}
        rows.append((f"dmriscope batched WLS -> FA, MD, MK, chunks of {chunk}", n_batched, wall, cpu, diff))
    rate_fit, rate_maps = n_dipy / rows[0][3], n_dipy / rows[1][3]
    return [(name, n, w, c, n / c, n / c / rate_fit, n / c / rate_maps, d) for name, n, w, c, d in rows]


def write_synthetic_dwi(folder: Path, shape: tuple[int, int, int, int], use_gzip: bool) -> tuple[Path, ...]:
    """A float32 4D image at HCP's scheme (repeated to shape[3] volumes), ellipsoid mask, FSL gradients."""
    from dmriscope.cohort.gradients import load_hcp_scheme, write_fsl_gradients

    bvals, bvecs = load_hcp_scheme()
    bvals, bvecs = np.resize(bvals, shape[3]), np.resize(bvecs, (shape[3], 3))
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape[:3]], indexing="ij"))
    mask = ((grid / 0.8) ** 2).sum(axis=0) <= 1.0
    fibre = np.stack([np.cos(3 * grid[1]), np.sin(3 * grid[1]), 0.3 * grid[2]])
    fibre /= np.linalg.norm(fibre, axis=0)
    rng = np.random.default_rng(0)
    affine = np.diag([1.25, 1.25, 1.25, 1.0])
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    header.set_data_offset(352)
    dwi = folder / ("dwi.nii.gz" if use_gzip else "dwi.nii")
    with Opener(dwi, "wb") as f:  # nibabel's: gzip (level 1) by extension
        f.write(header.binaryblock + b"\x00" * 4)
        for t in range(shape[3]):
            cos2 = np.einsum("i,i...->...", bvecs[t].astype(np.float32), fibre) ** 2
            adc = 4e-4 + 1.3e-3 * cos2
            signal = 1000.0 * np.exp(-bvals[t] * adc + (bvals[t] * adc) ** 2 * 0.8 / 6) * mask
            noisy = np.hypot(
                signal + 25 * rng.standard_normal(signal.shape, np.float32),
                25 * rng.standard_normal(signal.shape, np.float32),
            )
            f.write(noisy.astype(np.float32).tobytes(order="F"))
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), folder / "mask.nii.gz")
    write_fsl_gradients(bvals, bvecs, folder / "dwi.bval", folder / "dwi.bvec")
    return dwi, folder / "dwi.bval", folder / "dwi.bvec", folder / "mask.nii.gz"


def _child_fit(paths: tuple[Path, ...], out: Path, fit: bool) -> tuple[float, float, dict]:
    """In a fresh process: import, optionally fit; return (peak RSS in MiB, seconds, fit settings)."""
    from dmriscope import dki

    start = time.perf_counter()
    settings = {}
    if fit:
        maps = {m: out / f"{m}.nii.gz" for m in ("FA", "MD", "MK")}
        settings = dki.fit_dki_files(*paths, maps, out / "fit.json", CFG)
    return _peak_rss_mib(), time.perf_counter() - start, settings


def _peak_rss_mib() -> float:
    """This process's peak RSS: VmHWM (reset at exec; ru_maxrss can carry the forking parent's peak), else ru_maxrss."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_table(shape: tuple[int, int, int, int], use_gzip: bool) -> list[tuple]:
    from dmriscope import dki

    with tempfile.TemporaryDirectory(prefix="dki_bench_") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        paths = write_synthetic_dwi(folder, shape, use_gzip)
        size_gb = paths[0].stat().st_size / 1e9
        print(
            f"wrote {paths[0].name} {shape} ({size_gb:.2f} GB) in {time.perf_counter() - start:.0f} s", file=sys.stderr
        )
        rows = []
        for fit in (False, True):
            with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
                rss, seconds, settings = pool.submit(_child_fit, paths, folder, fit).result()
            rows.append((fit, rss, seconds, settings))
    n_vox, n_vol = rows[1][3]["voxels_fitted"], rows[1][3]["n_volumes"]
    volume_bytes = int(np.prod(shape[:3])) * 4
    block = min(shape[3], max(1, dki.READ_BLOCK_BYTES // volume_bytes)) * volume_bytes
    model = (n_vox * n_vol * 4 + 2 * block + CFG["chunk_voxels"] * n_vol * 8 * 6) / 2**20
    return [
        ("file", f"{paths[0].name} {'x'.join(map(str, shape))}", f"{size_gb:.2f} GB"),
        ("voxels fitted / volumes", f"{n_vox} / {n_vol}", ""),
        ("peak RSS after imports only", f"{rows[0][1]:.0f} MiB", ""),
        ("peak RSS of fit_dki_files", f"{rows[1][1]:.0f} MiB", f"{rows[1][2]:.1f} s total"),
        (
            "  of which the fit",
            "",
            f"{rows[1][3]['fit_seconds']:.1f} s ({n_vox / rows[1][3]['fit_seconds']:.0f} voxels/s)",
        ),
        ("model (upper bound): signals + 2 read blocks + chunk", f"{model:.0f} MiB", "excl. imports"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dipy-voxels", type=int, default=2000)
    parser.add_argument("--batched-voxels", type=int, default=50000)
    parser.add_argument("--chunks", type=int, nargs="+", default=[CFG["chunk_voxels"]], help="chunk sizes to time")
    parser.add_argument("--shape", type=int, nargs=4, default=[145, 174, 145, 288], help="memory test image (HCP)")
    parser.add_argument("--gzip", action="store_true", help="write the memory test image as .nii.gz (slow)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--blas-threads", type=int, default=1, help="BLAS threads for both fits (threadpoolctl)")
    args = parser.parse_args()
    threadpool_limits(args.blas_threads)  # many tiny BLAS calls (dipy's per-voxel pinv) suffer from oversubscription
    print(f"BLAS threads: {args.blas_threads}; CPUs: {os.cpu_count()}; load average: {os.getloadavg()[0]:.1f}\n")
    if not args.skip_speed:
        print(
            "| method | voxels | wall s | CPU s | voxels per CPU s | vs dipy fit | vs dipy fit + maps "
            "| max abs diff vs dipy (FA, MD, MK) |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for name, n, wall, cpu, rate, fit, maps, diff in speed_table(
            args.dipy_voxels, args.batched_voxels, args.chunks
        ):
            diff_txt = ", ".join(f"{diff[m]:.1e}" for m in ("FA", "MD", "MK")) if diff else ""
            print(f"| {name} | {n} | {wall:.2f} | {cpu:.2f} | {rate:,.0f} | {fit:.1f}x | {maps:.1f}x | {diff_txt} |")
    if not args.skip_memory:
        print("\n| memory | value | time |\n|---|---:|---:|")
        for row in memory_table(tuple(args.shape), args.gzip):
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
