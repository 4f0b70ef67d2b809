"""How much does one training seed decide? Test AUC of the ViT variants over training seeds, on a finished run.

Retrains ``vit_scratch`` and ``vit_finetune`` (from the run's own MAE encoder, ``results/pretrain/{metric}/mae3d.pt``)
with the run's config and training seeds 0..n-1, through the workflow's own `train_model_files`, and prints per
model and metric the test AUC per seed, min / median / max, and how often fine-tuning beats training from scratch
with the same seed. Nothing is written under results/.

    .venv/bin/python benchmarks/vit_seeds.py --seeds 5 --configfile config.yaml
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

from dmriscope.checkpoints import load_model
from dmriscope.config import load_config
from dmriscope.engine import predict
from dmriscope.scores import classification_metrics
from dmriscope.tensors import open_dataset
from dmriscope.train_run import train_model_files


def test_auc(results: Path, metric: str, model: str, config: dict, seed: int) -> float:
    store, fold = results / "tensors", results / "tensors" / "fold0"  # the holdout split is fold 0
    files = {
        "tensor": str(store / f"{metric}.npy"),
        "index": str(fold / f"{metric}_index.tsv"),
        "norm": str(fold / f"{metric}_norm.json"),
        "brain_mask": str(store / "brain_mask.npy"),
    }
    voxels = str(fold / f"{metric}_norm.npy")
    train = {**config["train"], "seed": seed}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        train_model_files(
            model=model, **files, norm_voxels=voxels, split_digest=str(results / "split" / "split.sha256"),
            pretrained=str(results / "pretrain" / metric / "fold0" / "mae3d.pt") if model != "vit_scratch" else None,
            train=train, models=config["models"], grid=config["grid"], checkpoint_dir=str(out / "ck"),
            best=str(out / "best.pt"), history=str(out / "h.jsonl"), hparams=str(out / "p.json"), threads=1,
            atlas=str(store / "atlas.npy"), wm_mask=str(store / "wm_mask.npy"),
        )  # fmt: skip
        net, _ = load_model(out / "best.pt", "cpu")
        test = open_dataset(*files.values(), ["test"], norm_voxels=voxels)
        p, y, _ = predict(net, test, torch.device("cpu"))
    return float(classification_metrics(y, p)["auc"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--configfile", type=Path, nargs="*", default=[], help="merged over config.yaml, in order")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--metrics", nargs="+", default=["FA", "MD", "MK"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = yaml.safe_load((Path(__file__).parents[1] / "config.yaml").read_text())
    for path in args.configfile:
        config = merge(config, yaml.safe_load(path.read_text()))
    load_config(config)
    rows = []
    for metric in args.metrics:
        aucs = {
            m: [test_auc(args.results, metric, m, config, s) for s in range(args.seeds)]
            for m in ("vit_scratch", "vit_finetune")
        }
        wins = sum(f >= s for f, s in zip(aucs["vit_finetune"], aucs["vit_scratch"]))
        for model, values in aucs.items():
            v = np.array(values)
            rows.append(
                f"| {metric} | {model} | {' '.join(f'{a:.3f}' for a in v)} | {v.min():.3f} / {np.median(v):.3f} / {v.max():.3f} | {wins} of {args.seeds} |"
            )
    print("| metric | model | test AUC per seed | min / median / max | fine-tune >= scratch (same seed) |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


if __name__ == "__main__":
    main()
