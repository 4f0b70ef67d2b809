"""The paper's three model families at paper size on this machine's CPU: seconds per training step and per forward
pass, peak memory, and what they mean for configs/hcp.yaml (831 training subjects, 100 test subjects x 49 occlusion
passes) and the SLURM profile's train_model / occlude_regions runtimes (issue 18).

Each model runs in a fresh process (peak RSS = VmHWM of that process): build at the schema's defaults (the paper's
sizes) for the 180 x 224 x 224 grid, one warm-up step, then `--steps` timed training steps (forward + backward +
AdamW, batch 1, fp32) and `--steps` timed forward passes under no_grad (what occlusion runs). Usage::

    .venv/bin/python benchmarks/paper_scale_models.py [--models cnn2d cnn3d vit] [--steps 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from pathlib import Path

GRID = (180, 224, 224)
N_TRAIN, N_TEST, OCCLUSION_PASSES = 831, 100, 49  # the paper's split; 48 regions + the unoccluded input


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _measure(name: str, steps: int, threads: int, queue: mp.Queue) -> None:
    import torch

    from dmriscope.models import build_model, count_parameters

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(name, GRID)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = torch.randn(1, 1, *GRID), torch.tensor([1.0])

    def train_step() -> None:
        optimiser.zero_grad(set_to_none=True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).reshape(-1)[:1], y)
        loss.backward()
        optimiser.step()

    model.train()
    train_step()  # warm-up: kernels, allocator
    start = time.perf_counter()
    for _ in range(steps):
        train_step()
    step_s = (time.perf_counter() - start) / steps
    model.eval()
    with torch.no_grad():
        model(x)
        start = time.perf_counter()
        for _ in range(steps):
            model(x)
        forward_s = (time.perf_counter() - start) / steps
    queue.put((name, count_parameters(model)["total"], step_s, forward_s, _peak_rss_mib()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cnn2d", "cnn3d", "vit"])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    context = mp.get_context("spawn")
    rows = []
    for name in args.models:
        queue = context.Queue()
        process = context.Process(target=_measure, args=(name, args.steps, args.threads, queue))
        process.start()
        rows.append(queue.get())
        process.join()
    print(f"CPU, {args.threads} threads, batch 1, fp32, grid {GRID}; estimates scale the per-subject times")
    print("| model | parameters | train step s | forward s | peak RSS MiB | epoch of 831 h | occlusion of 100 x 49 h |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, params, step_s, forward_s, rss in rows:
        epoch_h, occlusion_h = N_TRAIN * step_s / 3600, N_TEST * OCCLUSION_PASSES * forward_s / 3600
        print(
            f"| {name} | {params:,} | {step_s:.1f} | {forward_s:.1f} | {rss:,.0f} | {epoch_h:.1f} | {occlusion_h:.1f} |"
        )


if __name__ == "__main__":
    main()
