"""Time region occlusion: dmriscope's batched occlusion vs Captum's FeatureAblation (and a one-region loop).

Same model, inputs, atlas and baselines (the subject's mean WM value) for every method; prints a table of wall
time, forward passes, speed-up over Captum with its default ``perturbations_per_eval=1`` and the largest
|delta_p| difference from it (they must agree to float precision). Example::

    .venv/bin/python benchmarks/occlusion.py --model cnn3d --grid 36 48 48 --subjects 4 --batch-size 16
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from dmriscope.models import build_model, positive_probability
from dmriscope.occlusion import OcclusionResult, occlude_batch, occlude_captum, occlude_one_at_a_time


def phantom_atlas(grid: tuple[int, int, int], n_regions: int = 48, seed: int = 0) -> np.ndarray:
    """48 Voronoi regions filling an ellipsoid 'white matter' inside the grid (S, H, W) int16."""
    rng = np.random.default_rng(seed)
    coords = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in grid], indexing="ij"))
    inside = (coords**2).sum(0) < 0.6
    seeds = rng.uniform(-0.6, 0.6, size=(n_regions, 3))
    nearest = np.argmin(((coords[None] - seeds[:, :, None, None, None]) ** 2).sum(1), axis=0) + 1
    return (nearest * inside).astype(np.int16)


def timed(fn: Callable[[], OcclusionResult], device: torch.device) -> tuple[OcclusionResult, float]:
    """Run `fn` once (after a warm-up forward elsewhere); return its result and wall seconds."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cnn3d", help="registry name: cnn2d, cnn3d, vit")
    parser.add_argument("--grid", type=int, nargs=3, default=[36, 48, 48])
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-loop", action="store_true", help="leave out the one-region-at-a-time loop")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    grid = tuple(args.grid)
    model = build_model(args.model, grid).to(device).eval()
    atlas_np = phantom_atlas(grid)
    atlas = torch.as_tensor(atlas_np, dtype=torch.int64, device=device)
    wm = atlas > 0
    x = torch.randn(args.subjects, 1, *grid, device=device) * wm
    labels = torch.arange(args.subjects, device=device) % 2
    regions = sorted(int(r) for r in np.unique(atlas_np) if r > 0)
    with torch.no_grad():
        model(x[:1])  # warm-up

    n, r, b = args.subjects, len(regions), args.batch_size
    methods: list[tuple[str, int, Callable[[], OcclusionResult]]] = [
        ("captum ppe=1", n * (r + 2), lambda: occlude_captum(model, x, labels, atlas, wm, positive_probability, regions)),
        (f"captum ppe={b}", n * (-(-(r + 1) // b) + 2),
         lambda: occlude_captum(model, x, labels, atlas, wm, positive_probability, regions, perturbations_per_eval=b)),
        (f"dmriscope batch={b}", 1 + -(-n * r // b),
         lambda: occlude_batch(model, x, labels, atlas, wm, positive_probability, regions, batch_size=b)),
    ]  # fmt: skip
    if not args.skip_loop:
        methods.insert(1, ("one region per pass", n * (r + 1),
                           lambda: occlude_one_at_a_time(model, x, labels, atlas, wm, positive_probability, regions)))  # fmt: skip
    print(f"model {args.model}, grid {grid}, {n} subjects x {r} regions, device {device}, {args.threads} threads")
    results = {}
    for name, passes, fn in methods:
        results[name] = (*timed(fn, device), passes)
    reference, ref_seconds, _ = results["captum ppe=1"]
    print(f"| {'method':<22} | {'passes':>6} | {'seconds':>8} | {'speed-up':>8} | {'max |Δp diff|':>13} |")
    print(f"|{'-' * 24}|{'-' * 8}|{'-' * 10}|{'-' * 10}|{'-' * 15}|")
    for name, (res, seconds, passes) in results.items():
        diff = float(np.abs(res.delta_p - reference.delta_p).max())
        print(f"| {name:<22} | {passes:>6} | {seconds:>8.2f} | {ref_seconds / seconds:>7.1f}x | {diff:>13.2e} |")


if __name__ == "__main__":
    main()
