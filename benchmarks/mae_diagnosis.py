"""Why does (or doesn't) the MAE learn, and what can a linear probe read from its encoder? Prints tables.

Runs on a finished tensor store (``results/tensors``, after `stack_tensors`) and answers, per metric:

1. **What is there to predict** (validation subjects, the model input, brain voxels): the variance of the input
   (~ the population-mean predictor's MSE) and, as ratios to it, the error of an oracle that knows each subject's
   own atlas-region means (what knowing every region offset would give) and of the mean of a voxel's neighbours;
   and, per patch size, what the visible patches allow without any learning (the mean of the visible voxels of a
   masked voxel's own region; validation and test subjects, MAE masks).
2. **The MAE against the population mean**: the 2D -> 3D pretraining of `dmriscope.pretrain` with the settings
   given (patch, epochs, ...), the validation masked-patch MSE / population-mean MSE per stage, before and after
   training (epoch 0 of the 3D stage is the 2D encoder's transfer).
3. **What the frozen encoder carries**: test AUC of an L2 logistic regression (scikit-learn, standardised
   features, C by 5-fold CV on the training set) on the class token and on the mean patch token, and the spread of
   the test AUC of random directions in that feature space (what an untrained head reads); and on every patch
   token side by side (``tokens``), which keeps where in the volume a feature sits.

Usage (2 threads, the default cohort's store; a few minutes per metric)::

    .venv/bin/python benchmarks/mae_diagnosis.py --results results --metrics FA MD MK --patch 6 16 16
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dmriscope.models.vit import ViTClassifier, load_pretrained_encoder
from dmriscope.pretrain import pretrain_mae2d, pretrain_mae3d
from dmriscope.tensors import open_dataset


def store_files(results: Path, metric: str) -> dict[str, Path]:
    """The holdout split's (fold 0's) view of a metric's tensor store, as the workflow's rules pass it."""
    store, fold = results / "tensors", results / "tensors" / "fold0"
    return {
        "tensors": store / f"{metric}.npy",
        "index": fold / f"{metric}_index.tsv",
        "norm": fold / f"{metric}_norm.json",
        "brain_mask": store / "brain_mask.npy",
        "norm_voxels": fold / f"{metric}_norm.npy",
    }


def fold_dataset(results: Path, metric: str, sets: list[str]):
    f = store_files(results, metric)
    return open_dataset(f["tensors"], f["index"], f["norm"], f["brain_mask"], sets, norm_voxels=f["norm_voxels"])


def stack(dataset) -> np.ndarray:
    return np.stack([dataset[i][0][0].numpy() for i in range(len(dataset))])


def data_table(results: Path, metric: str) -> dict:
    """What a predictor of the validation input could reach, as a ratio to the population mean's MSE (brain voxels):
    an oracle that knows each subject's own atlas-region means, and the mean of a voxel's 26 neighbours."""
    store = results / "tensors"
    val = stack(fold_dataset(results, metric, ["val"]))
    brain = np.load(store / "brain_mask.npy")
    atlas = np.load(store / "atlas.npy")
    total = float((val[:, brain] ** 2).sum())
    oracle = np.zeros_like(val)
    for region in np.unique(atlas[(atlas > 0) & brain]):
        sel = (atlas == region) & brain
        oracle[:, sel] = val[:, sel].mean(axis=1, keepdims=True)
    kernel = np.ones((3, 3, 3))
    kernel[1, 1, 1] = 0
    counts = np.maximum(ndimage.convolve(brain.astype(float), kernel, mode="constant"), 1)
    neighbours = np.stack([ndimage.convolve(x * brain, kernel, mode="constant") / counts for x in val])
    best = min(float(((val - a * neighbours)[:, brain] ** 2).sum()) / total for a in (0.25, 0.5, 0.75, 1.0))
    a, b = val[:, 1:][:, brain[1:] & brain[:-1]], val[:, :-1][:, brain[1:] & brain[:-1]]
    return {
        "metric": metric,
        "input variance (baseline MSE)": total / val[:, brain].size,
        "region-mean oracle / baseline": float(((val - oracle)[:, brain] ** 2).sum()) / total,
        "neighbour-mean predictor / baseline": best,
        "neighbour correlation": float(np.corrcoef(a.ravel(), b.ravel())[0, 1]),
    }


def visible_rule_table(results: Path, metric: str, patches: list[tuple[int, int, int]], mask_ratio: float) -> list:
    """What the visible patches alone allow, without learning: under MAE masks (``mask_ratio``, patches of each size,
    seeded), predict every masked voxel by the mean of the visible voxels of its own atlas region (0, the population
    mean, where none is visible); the masked-voxel MSE of that rule and of the visible white matter's global mean, as
    ratios to the population mean's, on validation and test subjects."""
    store = results / "tensors"
    volumes = stack(fold_dataset(results, metric, ["val", "test"]))
    brain = np.load(store / "brain_mask.npy")
    atlas = np.where(brain, np.load(store / "atlas.npy"), 0)
    rows = []
    for patch in patches:
        rng = np.random.default_rng(0)
        tiles = [s // p for s, p in zip(brain.shape, patch)]
        err = {"region rule": 0.0, "global rule": 0.0, "mean": 0.0}
        for x in volumes:
            visible = np.zeros(int(np.prod(tiles)), bool)
            visible[rng.permutation(visible.size)[: round(visible.size * (1 - mask_ratio))]] = True
            visible = visible.reshape(tiles)
            for axis, p in enumerate(patch):
                visible = np.repeat(visible, p, axis=axis)
            rule = np.zeros_like(x)
            for region in np.unique(atlas[atlas > 0]):
                seen = (atlas == region) & visible
                if seen.any():
                    rule[(atlas == region) & ~visible] = x[seen].mean()
            wm_seen = (atlas > 0) & visible
            glob = np.where(atlas > 0, x[wm_seen].mean() if wm_seen.any() else 0.0, 0.0)
            hidden = ~visible
            err["region rule"] += float(((x - rule)[hidden] ** 2).sum())
            err["global rule"] += float(((x - glob)[hidden] ** 2).sum())
            err["mean"] += float((x[hidden] ** 2).sum())
        rows.append(
            {
                "metric": metric,
                "patch": "x".join(map(str, patch)),
                "visible same-region mean / baseline": err["region rule"] / err["mean"],
                "visible white-matter mean / baseline": err["global rule"] / err["mean"],
            }
        )
    return rows


def pretrain(results: Path, metric: str, out: Path, vit: dict, settings: dict, threads: int) -> tuple[list, list]:
    files = {k: str(v) for k, v in store_files(results, metric).items()}
    pretrain_mae2d(
        **files,
        checkpoint=str(out / "mae2d.pt"),
        history=str(out / "h2.jsonl"),
        loss_png=str(out / "l2.png"),
        vit=vit,
        pretrain=settings,
        threads=threads,
    )
    pretrain_mae3d(
        **files,
        init=str(out / "mae2d.pt"),
        checkpoint=str(out / "mae3d.pt"),
        history=str(out / "h3.jsonl"),
        loss_png=str(out / "l3.png"),
        figure=str(out / f"{metric}_reconstruction.png"),
        vit=vit,
        pretrain=settings,
        threads=threads,
    )
    read = lambda p: [json.loads(line) for line in Path(p).read_text().splitlines()]  # noqa: E731
    return read(out / "h2.jsonl"), read(out / "h3.jsonl")


@torch.no_grad()
def features(results: Path, metric: str, checkpoint: Path | None, vit: dict) -> dict[str, dict[str, np.ndarray]]:
    """Features and labels per set from a MAE encoder (None = random): the class token (N, D), the mean patch token
    (N, D) and every patch token side by side (N, P x D, `tokens`: what a linear read-out of the patches could use
    before pooling averages a local effect with every other patch)."""
    store = results / "tensors"
    arch = {k: v for k, v in vit.items() if k not in ("pool",)}
    out: dict[str, dict[str, np.ndarray]] = {}
    torch.manual_seed(0)
    models = {
        pool: ViTClassifier(tuple(np.load(store / "brain_mask.npy").shape), pool=pool, **arch)
        for pool in ("cls", "mean")
    }
    models["mean"].load_state_dict(models["cls"].state_dict())
    for model in models.values():
        if checkpoint is not None:
            load_pretrained_encoder(model, checkpoint)
        model.eval()
    for name in ("train", "test"):
        data = fold_dataset(results, metric, [name])
        x = torch.from_numpy(stack(data))[:, None]
        out[name] = {pool: torch.cat([m.features(b) for b in x.split(16)]).numpy() for pool, m in models.items()}
        backbone = models["cls"].backbone
        tokens = [backbone.encode_tokens(backbone.embed(b))[:, 1:].flatten(1) for b in x.split(16)]
        out[name]["tokens"] = torch.cat(tokens).numpy()
        out[name]["y"] = data.labels
    return out


def probe_table(feats: dict, metric: str, source: str) -> list[dict]:
    rows = []
    for pool in ("cls", "mean", "tokens"):
        xtr, ytr, xte, yte = feats["train"][pool], feats["train"]["y"], feats["test"][pool], feats["test"]["y"]
        clf = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=10, cv=5, max_iter=5000, scoring="roc_auc"))
        clf.fit(xtr, ytr)
        auc = roc_auc_score(yte, clf.predict_proba(xte)[:, 1])
        z = (xte - xtr.mean(0)) / (xtr.std(0) + 1e-12)
        dirs = np.random.default_rng(0).standard_normal((200, z.shape[1]))
        rand = np.array([roc_auc_score(yte, z @ d) for d in dirs])
        rows.append(
            {
                "metric": metric,
                "encoder": source,
                "pool": pool,
                "feature SD (median over dims)": float(np.median(xtr.std(0))),
                "logreg test AUC": float(auc),
                "random-direction AUC 5/50/95%": "/".join(f"{q:.2f}" for q in np.percentile(rand, [5, 50, 95])),
            }
        )
    return rows


def print_table(rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(rows[0])
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(fmt(row[k]) for k in keys) + " |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--metrics", nargs="+", default=["FA", "MD", "MK"])
    parser.add_argument("--patch", nargs=3, type=int, default=[6, 16, 16])
    parser.add_argument("--dim", type=int, default=96)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--epochs", nargs=2, type=int, default=[10, 10], help="2D and 3D MAE epochs")
    parser.add_argument("--lr", nargs=2, type=float, default=[1e-3, 5e-4], help="2D and 3D MAE peak lr")
    parser.add_argument("--batch", nargs=2, type=int, default=[64, 8], help="2D and 3D MAE batch sizes")
    parser.add_argument("--warmup", nargs=2, type=int, default=[2, 2], help="2D and 3D MAE warm-up epochs")
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--norm-pix", action="store_true")
    parser.add_argument("--figures", type=Path, default=None, help="keep the reconstruction figures here")
    parser.add_argument("--skip-data", action="store_true")
    parser.add_argument("--only-data", action="store_true", help="the data tables only (no MAE, no probes)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sets", nargs="+", default=["train"], help="pretrain.sets")
    parser.add_argument(
        "--rule-patches", nargs="+", default=["6x16x16", "3x8x8", "3x4x4", "2x4x4"], help="patches of the rule table"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(args.threads)
    vit = {"dim": args.dim, "depth": args.depth, "heads": 4, "mlp_dim": 4 * args.dim, "patch": args.patch}
    settings = {
        "mae2d": {
            "epochs": args.epochs[0],
            "batch_size": args.batch[0],
            "lr": args.lr[0],
            "warmup_epochs": args.warmup[0],
        },
        "mae3d": {
            "epochs": args.epochs[1],
            "batch_size": args.batch[1],
            "lr": args.lr[1],
            "warmup_epochs": args.warmup[1],
        },
        "weight_decay": 0.05,
        "mask_ratio": args.mask_ratio,
        "decoder_dim": 192,
        "decoder_depth": 4,
        "decoder_heads": 6,
        "norm_pix_loss": args.norm_pix,
        "seed": 0,
        "sets": args.sets,
    }
    data_rows, rule_rows, mae_rows, probe_rows = [], [], [], []
    rule_patches = [tuple(int(v) for v in p.split("x")) for p in args.rule_patches]
    for metric in args.metrics:
        if not args.skip_data:
            data_rows.append(data_table(args.results, metric))
            rule_rows += visible_rule_table(args.results, metric, rule_patches, args.mask_ratio)
        if args.only_data:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            h2, h3 = pretrain(args.results, metric, Path(tmp), vit, settings, args.threads)
            for stage, h in (("2D", h2), ("3D", h3)):
                mae_rows.append(
                    {
                        "metric": metric,
                        "stage": stage,
                        "val ratio at start": h[0].get("val_ratio"),
                        "val ratio at end": h[-1].get("val_ratio"),
                        "train loss at end": h[-1]["loss"],
                        "val baseline": h[-1].get("val_baseline"),
                    }
                )
            if args.figures:
                args.figures.mkdir(parents=True, exist_ok=True)
                (args.figures / f"{metric}_reconstruction.png").write_bytes(
                    (Path(tmp) / f"{metric}_reconstruction.png").read_bytes()
                )
            for source, ckpt in (("random", None), ("MAE", Path(tmp) / "mae3d.pt")):
                probe_rows += probe_table(features(args.results, metric, ckpt, vit), metric, source)
    print(f"settings: vit {vit}, pretrain {settings}\n")
    print_table(data_rows)
    print_table(rule_rows)
    print_table(mae_rows)
    print_table(probe_rows)


if __name__ == "__main__":
    main()
