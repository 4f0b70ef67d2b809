"""GPU memory of the paper-size 3D ViT and 3D MAE (grid 180x224x224, patch 6x16x16): estimate, then check on CPU.

    .venv/bin/python benchmarks/vit_memory.py [--no-measure] [--budget-gib 24]

Estimate (bytes), for a training step with AdamW:

- parameters P: fp32 weights 4P + grads 4P + AdamW moments 8P = 16P, plus 2P for autocast's bf16 weight copies;
- activations saved for backward, per transformer block and token (D width, M MLP width, h heads, a = 2 bytes
  under bf16 autocast, 4 in fp32): the two LayerNorm inputs (fp32 residual stream, 2 x 4D) and their mean/rstd
  (16), the inputs of the four Linear layers (qkv D, out-proj D, fc1 D, fc2 M) and of GELU (M), q/k/v (3D, views of
  the qkv output) and the attention output (D) kept by scaled_dot_product_attention with its log-sum-exp (4h):
  ``bytes/token/block = 8D + 16 + 4h + a (7D + 2M)``. SDPA keeps no T x T matrix; a naive attention would add
  ``a h T^2`` per block (shown for comparison);
- activation checkpointing keeps only each block's input (4D per token) plus one block recomputed in backward;
- the ViT sees T = 5,881 tokens; the MAE encoder sees the 1,470 visible patches + class token, the decoder
  (192 wide, 4 blocks, MLP 768, 6 heads) all 5,881 tokens, plus the prediction/loss tensors (~4 x T x 1,536 x 4 B);
- + the input volume and a transient margin of 2 x T x M x 4 bytes per sample for gradient buffers in backward.

Measurement (CPU, no GPU needed): the bytes actually saved for backward, summed over distinct storages with
``torch.autograd.graph.saved_tensors_hooks`` during a forward pass at paper size (fp32, and bf16 autocast on CPU),
per block (depth 2 minus depth 1) and for the whole MAE; and the peak RSS of a full forward + backward of a
depth-2 paper-token ViT (fp32, batch 1) in a fresh process, against the estimate for that model.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dmriscope.models import build_model, count_parameters
from dmriscope.models.mae import MaskedAutoencoder, n_visible
from dmriscope.models.vit import ViTEncoder

GRID, PATCH = (180, 224, 224), (6, 16, 16)
VIT = {"dim": 384, "depth": 12, "heads": 6, "mlp_dim": 1536}
DEC = {"dim": 192, "depth": 4, "heads": 6, "mlp_dim": 768}
GIB = 2**30


def block_bytes_per_token(dim: int, mlp: int, heads: int, act_bytes: int) -> int:
    """Bytes saved for backward per token by one pre-norm block (see module docstring)."""
    return 8 * dim + 16 + 4 * heads + act_bytes * (7 * dim + 2 * mlp)


def n_params(mae: bool) -> int:
    with torch.device("meta"):
        model = build_model("vit", GRID)
        if not mae:
            return count_parameters(model)["backbone"] + count_parameters(model)["head"]
        enc = ViTEncoder(1, GRID, PATCH, **VIT)
        return sum(p.numel() for p in MaskedAutoencoder(enc, DEC["dim"], DEC["depth"], DEC["heads"]).parameters())


def activation_bytes(mae: bool, act_bytes: int, checkpointing: bool, naive_attention: bool = False) -> float:
    """Estimated activation bytes of one sample (forward saved tensors + backward margin)."""
    n_patch = math.prod(g // p for g, p in zip(GRID, PATCH))
    stages = [(n_visible(n_patch, 0.75) + 1 if mae else n_patch + 1, VIT)]
    if mae:
        stages.append((n_patch + 1, DEC))
    total = 0.0
    for tokens, cfg in stages:
        per_block = tokens * block_bytes_per_token(cfg["dim"], cfg["mlp_dim"], cfg["heads"], act_bytes)
        if naive_attention:
            per_block += act_bytes * cfg["heads"] * tokens**2
        if checkpointing:
            total += cfg["depth"] * tokens * 4 * cfg["dim"] + per_block
        else:
            total += cfg["depth"] * per_block
        total += 2 * tokens * cfg["mlp_dim"] * 4  # transient gradient buffers in backward
    total += math.prod(GRID) * (4 + act_bytes)  # input volume + its cast for the patch-embedding conv
    if mae:
        total += 4 * (n_patch * math.prod(PATCH)) * 4  # prediction, target, difference, squared (fp32)
    return total


def estimate_rows(budget_gib: float) -> list[list[str]]:
    rows = []
    for mae in (False, True):
        p = n_params(mae)
        for act_bytes, label in ((2, "bf16"), (4, "fp32")):
            for ckpt in (False, True):
                for batch in (1, 2):
                    states = 16 * p + (2 * p if act_bytes == 2 else 0)
                    acts = batch * activation_bytes(mae, act_bytes, ckpt)
                    total = states + acts
                    rows.append(
                        [
                            "MAE 3D" if mae else "ViT",
                            label,
                            "yes" if ckpt else "no",
                            str(batch),
                            f"{p / 1e6:.2f}",
                            f"{states / GIB:.2f}",
                            f"{acts / GIB:.2f}",
                            f"{total / GIB:.2f}",
                            "yes" if total < budget_gib * GIB else "NO",
                        ]
                    )
        naive = 16 * p + activation_bytes(mae, 2, False, naive_attention=True)
        rows.append(
            [
                "MAE 3D" if mae else "ViT",
                "bf16 naive attn",
                "no",
                "1",
                f"{p / 1e6:.2f}",
                "",
                "",
                f"{naive / GIB:.2f}",
                "yes" if naive < budget_gib * GIB else "NO",
            ]
        )
    return rows


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths)))


def saved_bytes(model: torch.nn.Module, x: torch.Tensor, bf16: bool) -> int:
    """Bytes of the distinct non-parameter storages saved for backward during one forward pass."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}
    weight_shapes = {tuple(p.shape) for p in model.parameters()}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in params and tuple(t.shape) not in weight_shapes:  # skip weights and autocast weight copies
            seen[ptr] = storage.nbytes()
        return t

    cast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), cast:
        out = model(x)
    del out
    return sum(seen.values())


def measure_saved() -> list[list[str]]:
    """Per-block saved bytes of the paper-token ViT (depth 2 - depth 1) and the whole paper-size MAE forward."""
    torch.manual_seed(0)
    x = torch.randn(1, 1, *GRID)
    n_tok = math.prod(g // p for g, p in zip(GRID, PATCH)) + 1
    rows = []
    for bf16 in (False, True):
        a = 2 if bf16 else 4
        t0 = time.perf_counter()
        s1, s2 = (saved_bytes(ViTEncoder(1, GRID, PATCH, **{**VIT, "depth": d}).train(), x, bf16) for d in (1, 2))
        est = n_tok * block_bytes_per_token(VIT["dim"], VIT["mlp_dim"], VIT["heads"], a)
        rows.append(
            [
                "ViT block, 5,881 tokens",
                "bf16" if bf16 else "fp32",
                f"{(s2 - s1) / 2**20:.1f}",
                f"{est / 2**20:.1f}",
                f"{(s2 - s1) / est:.3f}",
                f"{time.perf_counter() - t0:.1f}",
            ]
        )
        t0 = time.perf_counter()
        mae = MaskedAutoencoder(ViTEncoder(1, GRID, PATCH, **VIT), DEC["dim"], DEC["depth"], DEC["heads"]).train()
        got = saved_bytes(mae, x, bf16)
        est = activation_bytes(True, a, False) - sum(2 * t * c["mlp_dim"] * 4 for t, c in ((1471, VIT), (5881, DEC)))
        rows.append(
            [
                "MAE 3D forward, whole model",
                "bf16" if bf16 else "fp32",
                f"{got / 2**20:.1f}",
                f"{est / 2**20:.1f}",
                f"{got / est:.3f}",
                f"{time.perf_counter() - t0:.1f}",
            ]
        )
    return rows


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """This process's peak RSS (VmHWM; unlike ru_maxrss it does not inherit the parent's peak across fork+exec)."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def _peak_worker(queue: mp.Queue) -> None:
    torch.manual_seed(0)
    small = build_model("vit", (12, 32, 32), patch=(6, 16, 16), depth=1)  # load the kernels at a tiny size first
    small(torch.randn(1, 1, 12, 32, 32)).sum().backward()
    del small
    model = build_model("vit", GRID, **{**VIT, "depth": 2}).train()
    x = torch.randn(1, 1, *GRID)
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS (Linux), so the peak is this step's alone
    base = rss_bytes()
    t0 = time.perf_counter()
    model(x).sum().backward()
    peak = peak_rss_bytes()
    queue.put((base, peak, time.perf_counter() - t0, sum(p.numel() for p in model.parameters())))


def measure_peak() -> list[str]:
    """Peak RSS growth of forward + backward (fp32, batch 1, depth 2, 5,881 tokens) vs the estimate (+ grads)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_worker, args=(queue,))
    proc.start()
    base, peak, seconds, n_par = queue.get()
    proc.join()
    n_tok = math.prod(g // p for g, p in zip(GRID, PATCH)) + 1
    est = 2 * n_tok * block_bytes_per_token(VIT["dim"], VIT["mlp_dim"], VIT["heads"], 4)
    est += 2 * n_tok * VIT["mlp_dim"] * 4 + 4 * n_par  # transient gradient buffers + parameter gradients
    grown = peak - base
    return [
        "ViT depth 2 fwd+bwd, peak RSS growth",
        "fp32",
        f"{grown / 2**20:.1f}",
        f"{est / 2**20:.1f}",
        f"{grown / est:.3f}",
        f"{seconds:.1f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-measure", action="store_true", help="print the estimate only")
    parser.add_argument("--budget-gib", type=float, default=24.0)
    args = parser.parse_args()
    print(f"Estimated training-step memory at paper size (grid {GRID}, patch {PATCH}), GiB; budget {args.budget_gib}")
    header = ["model", "precision", "ckpt", "batch", "params M", "states", "activations", "total", "fits"]
    print_table(header, estimate_rows(args.budget_gib))
    if args.no_measure:
        return
    print("\nMeasured on CPU (saved-for-backward bytes, MiB) vs the estimate's formula")
    rows = measure_saved()
    rows.append(measure_peak())
    print_table(["what", "precision", "measured", "estimate", "ratio", "seconds"], rows)


if __name__ == "__main__":
    main()
