"""Which brain-size control removes size without removing the label? Linear readers under each control; prints tables.

Two parts:

**Runs** (positional arguments): for each finished holdout run directory (its ``results/tensors`` store,
``results/cohort/brain_volumes.tsv`` and the split the store carries), each metric and each control below, two
linear readers are trained on the training subjects and scored on the test subjects (AUC, stratified bootstrap CI):
*voxels* (every brain voxel of the model grid, standardised, PCA to 40 components, L2 logistic regression) and
*regions* (the 48 atlas-region means, standardised, L2 logistic regression).

**Residue** (``--residue``, with the runs): what the pooled regression leaves. Per metric, on the regressed and
voxel-standardised maps: the voxel reader, a reader of the 48 regions' within-region spatial SD (second order:
how rough a subject's map is inside each region), the test correlation of volume with a ridge prediction of it
from the maps (PCA 40), and the positive / negative class ratio of within-region SD (median over regions, and how
many regions exceed 1) before and after the regression.

**Synthetic** (``--synthetic N``): N seeds of a high-dimensional toy (120 features, each loading on a size
variable, plus noise; the classes 1.5 SDs apart in size - the default cohort's gap - and no label effect), the case
where an over-parameterised reader can fit its training set: what each control leaves of size.

The controls (fitted on the training subjects only; scikit-learn throughout):

- ``none``: the maps as they are.
- ``pooled``: dmriscope's ``tensors.regress_out: brain_volume`` - each feature's least-squares line on brain volume,
  no label in that model, removed from every subject (test subjects with the training fit).
- ``pooled-quadratic``: the same with volume and volume squared (does a non-linear size residue matter?).
- ``within-label``: the slope on volume fitted beside the label (the ANCOVA/GLM slope), only the volume term removed.
- ``overlap-weighted``: the slope fitted with overlap weights (``1 - e`` for the positive class, ``e`` for the
  negative, ``e`` the propensity of the label given volume; Li, Morgan & Zaslavsky 2018), which balance the
  classes' mean volume.
- ``weights-only``: no regression; the reader trained with the overlap weights (size-balanced training by weights).
- ``matched``: no regression; the reader trained on the volume-matched pairs of the training subjects only
  (dmriscope's ``split.match: volume`` applied to the training part; `dmriscope.brain_size`).

What to read from it: on a size-only cohort (``configs/size-only-*.yaml``) a control that works leaves 0.5, on a
cohort with a microstructural effect it keeps the AUC. ``ESS`` is the overlap weights' effective sample size
(Kish) and ``matched`` the number of training subjects matching keeps: how much a balanced design has left. These
are linear proxies for the network models: they show what each control leaves for a reader to use, not what a CNN
reads.

Usage (each run directory a finished holdout run; about a minute per run on 2 cores)::

    .venv/bin/python benchmarks/size_controls.py runs/size15 runs/size5 runs/default
    .venv/bin/python benchmarks/size_controls.py --synthetic 12
    .venv/bin/python benchmarks/size_controls.py --residue runs/size15-regress
"""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression, LogisticRegression, RidgeCV
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dmriscope.brain_size import volume_matched_subjects
from dmriscope.scores import bootstrap_auc_ci

CONTROLS = ("none", "pooled", "pooled-quadratic", "within-label", "overlap-weighted", "weights-only", "matched")
SYNTHETIC_CONTROLS = ("none", "pooled", "weights-only", "matched")
METRICS = ("FA", "MD", "MK")
MIN_FIT = 10  # fewer training subjects than this (matching where the volumes do not overlap): no reader is fitted


def overlap_weights(volume: np.ndarray, label: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Overlap weights of every subject from a logistic propensity of the label on standardised volume (train fit)."""
    z = (volume - volume[train].mean()) / volume[train].std()
    propensity = LogisticRegression(C=1e4).fit(z[train, None], label[train]).predict_proba(z[:, None])[:, 1]
    return np.where(label == 1, 1.0 - propensity, propensity)


def kish_ess(weights: np.ndarray) -> float:
    return float(weights.sum() ** 2 / (weights**2).sum())


def matched_rows(volume: np.ndarray, label: np.ndarray, train: np.ndarray) -> np.ndarray:
    """The training rows that dmriscope's 1:1 volume matching keeps (bool over all rows)."""
    subjects = np.array([f"s{i:05d}" for i in range(len(label))])
    participants = pd.DataFrame({"subject": subjects[train], "sex": np.where(label[train] == 1, "M", "F")})
    return np.isin(subjects, volume_matched_subjects(participants, pd.Series(volume, index=subjects)))


def remove_size(features, volume, label, train, control: str, weights: np.ndarray) -> np.ndarray:
    """``features`` with the control's size model (fitted on ``train``) removed; unchanged for the controls that
    act on the training set instead (``none``, ``weights-only``, ``matched``)."""
    v = ((volume - volume[train].mean()) / volume[train].std())[:, None]
    if control in ("none", "weights-only", "matched"):
        return features
    if control == "pooled-quadratic":
        design = np.hstack([v, v**2])
    elif control == "within-label":
        design = np.hstack([v, label[:, None].astype(float)])
    else:
        design = v
    fit_weights = weights[train] if control == "overlap-weighted" else None
    model = LinearRegression().fit(design[train], features[train], sample_weight=fit_weights)
    if control == "within-label":  # only the volume term goes; the label term is what the classifier should find
        return features - v * model.coef_[:, 0]
    return features - (model.predict(design) - model.intercept_)


def fit_rows(control: str, volume, label, train, weights) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows a control trains the reader on, and their sample weights (None: unweighted)."""
    if control == "matched":
        return matched_rows(volume, label, train), None
    return train, (weights[train] / weights[train].mean() if control == "weights-only" else None)


def reader(kind: str, n_rows: int) -> object:
    """The linear reader; the voxel one's PCA keeps 40 components, fewer when it is fitted on fewer subjects."""
    steps = [StandardScaler()] + ([PCA(min(40, n_rows - 1), random_state=0)] if kind == "voxels" else [])
    return make_pipeline(*steps, LogisticRegression(C=0.1, max_iter=5000))


def test_scores(features, label, rows: np.ndarray, weights, test: np.ndarray, kind: str) -> np.ndarray:
    """The reader fitted on ``rows`` (weighted by ``weights`` when given), its decision function on ``test``."""
    fit_kw = {} if weights is None else {"logisticregression__sample_weight": weights}
    return (
        reader(kind, int(np.count_nonzero(rows)))
        .fit(features[rows], label[rows], **fit_kw)
        .decision_function(features[test])
    )


def auc_cell(label: np.ndarray, score: np.ndarray) -> str:
    """AUC with dmriscope's stratified bootstrap 95% CI (`dmriscope.scores.bootstrap_auc_ci`), * when it excludes 0.5."""
    low, high = bootstrap_auc_ci(label, score)
    mark = "*" if low > 0.5 or high < 0.5 else ""
    return f"{roc_auc_score(label, score):.3f} [{low:.2f}, {high:.2f}]{mark}"


def load_run(results: Path, metric: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, np.ndarray]:
    """(voxel features, region-mean features, the store's index, volumes in cm^3) of one run and metric."""
    store = results / "tensors"
    index = pd.read_csv(store / f"{metric}_index.tsv", sep="\t")
    if not {"train", "test"} <= set(index["set"]):
        raise SystemExit(f"{store / f'{metric}_index.tsv'}: needs a holdout split (train and test sets)")
    volumes_tsv = results / "cohort" / "brain_volumes.tsv"
    if not volumes_tsv.exists():
        raise SystemExit(f"{volumes_tsv}: missing (a run from before brain volumes were measured)")
    maps = np.load(store / f"{metric}.npy", mmap_mode="r")
    mask = np.load(store / "brain_mask.npy").astype(bool)
    atlas = np.load(store / "atlas.npy")
    voxels = np.asarray(maps[:, mask], dtype=np.float64)
    regions = np.stack([np.asarray(maps[:, atlas == r]).mean(axis=1) for r in range(1, 49)], axis=1)
    volumes = pd.read_csv(volumes_tsv, sep="\t").set_index("subject")
    return voxels, regions, index, volumes.loc[index["subject"], "brain_volume_mm3"].to_numpy() / 1e3


def run_table(results: Path) -> pd.DataFrame:
    rows = []
    for metric in METRICS:
        voxels, regions, index, volume = load_run(results, metric)
        label = index["label"].to_numpy()
        train, test = index["set"].eq("train").to_numpy(), index["set"].eq("test").to_numpy()
        weights = overlap_weights(volume, label, train)
        for control in CONTROLS:
            fit, fit_weights = fit_rows(control, volume, label, train, weights)
            row = {"run": results.parent.name, "metric": metric, "control": control}
            for kind, features in (("voxels", voxels), ("regions", regions)):
                if np.count_nonzero(fit) < MIN_FIT:
                    row[kind] = f"n/a ({np.count_nonzero(fit)} training subjects)"
                    continue
                corrected = remove_size(features, volume, label, train, control, weights)
                row[kind] = auc_cell(label[test], test_scores(corrected, label, fit, fit_weights, test, kind))
            row["ESS"] = f"{kish_ess(weights[train]):.0f} of {train.sum()}"
            row["matched"] = int(matched_rows(volume, label, train).sum())
            rows.append(row)
    return pd.DataFrame(rows)


def region_sd(features: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(subjects, 48): each atlas region's spatial SD of a subject's voxel features (``regions``: label per voxel)."""
    return np.stack([features[:, regions == r].std(axis=1) for r in range(1, 49)], axis=1)


def sd_ratios(features: np.ndarray, regions: np.ndarray, label: np.ndarray) -> np.ndarray:
    """(48,): per region, the positive class's mean within-region SD over the negative class's."""
    sd = region_sd(features, regions)
    return sd[label == 1].mean(axis=0) / sd[label == 0].mean(axis=0)


def ratio_cell(ratios: np.ndarray) -> str:
    """Median ratio over the regions, and how many regions exceed 1."""
    return f"{np.median(ratios):.3f} ({int((ratios > 1).sum())} of {ratios.size})"


def residue_table(results: Path) -> pd.DataFrame:
    """What ``pooled`` regression leaves on one holdout run: first-order (voxels, volume) and second-order readers."""
    mask = np.load(results / "tensors" / "brain_mask.npy").astype(bool)
    regions = np.load(results / "tensors" / "atlas.npy")[mask]
    rows = []
    for metric in METRICS:
        voxels, _, index, volume = load_run(results, metric)
        label = index["label"].to_numpy()
        train, test = index["set"].eq("train").to_numpy(), index["set"].eq("test").to_numpy()
        regressed = remove_size(voxels, volume, label, train, "pooled", np.ones(len(label)))
        z = (regressed - regressed[train].mean(axis=0)) / (regressed[train].std(axis=0) + 1e-12)
        pca = PCA(40, random_state=0).fit(z[train])
        ridge = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(pca.transform(z[train]), volume[train])
        volume_r = np.corrcoef(ridge.predict(pca.transform(z[test])), volume[test])[0, 1]
        rows.append(
            {
                "run": results.parent.name,
                "metric": metric,
                "voxels, regressed": auc_cell(label[test], test_scores(z, label, train, None, test, "voxels")),
                "region SD, regressed": auc_cell(
                    label[test], test_scores(region_sd(z, regions), label, train, None, test, "regions")
                ),
                "r(volume, ridge on maps), test": f"{volume_r:.3f}",
                "SD ratio, raw": ratio_cell(sd_ratios(voxels, regions, label)),
                "SD ratio, regressed": ratio_cell(sd_ratios(regressed, regions, label)),
            }
        )
    return pd.DataFrame(rows)


def synthetic_table(seeds: int, n: int = 600, features: int = 120, gap: float = 1.5) -> pd.DataFrame:
    """Test AUC of a ridge logistic reader per control over ``seeds`` draws of the size-only toy."""
    aucs: dict[str, list[float]] = {control: [] for control in SYNTHETIC_CONTROLS}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        label = np.tile([1, 0], n // 2)
        volume = gap * (label - 0.5) + rng.normal(0, 1, n)
        x = volume[:, None] * rng.normal(0, 1, features) + rng.normal(0, 1, (n, features))
        train, test = np.arange(n) < n // 2, np.arange(n) >= n * 3 // 5
        weights = overlap_weights(volume, label, train)
        for control in SYNTHETIC_CONTROLS:
            fit, fit_weights = fit_rows(control, volume, label, train, weights)
            corrected = remove_size(x, volume, label, train, control, weights)
            aucs[control].append(
                roc_auc_score(label[test], test_scores(corrected, label, fit, fit_weights, test, "regions"))
            )
    return pd.DataFrame(
        {
            "control": list(aucs),
            "mean AUC": [np.mean(a) for a in aucs.values()],
            "min": [np.min(a) for a in aucs.values()],
            "max": [np.max(a) for a in aucs.values()],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run directories (each with results/ of a holdout run)")
    parser.add_argument("--synthetic", type=int, default=0, metavar="N", help="also run the toy over N seeds")
    parser.add_argument("--residue", action="store_true", help="what the pooled regression leaves, per run")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger("dmriscope").setLevel(logging.WARNING)
    if args.synthetic:
        print(f"Size-only toy (120 features, classes 1.5 SDs apart in size, {args.synthetic} seeds): test AUC\n")
        print(synthetic_table(args.synthetic).to_markdown(index=False, floatfmt=".3f"), flush=True)
    if args.residue:
        for run in args.runs:
            print("\n" + residue_table(run / "results").to_markdown(index=False), flush=True)
        return
    if args.runs:
        print("\nTest AUC [95% bootstrap CI] of linear readers under each size control (* = CI excludes 0.5)")
    for run in args.runs:
        print("\n" + run_table(run / "results").to_markdown(index=False), flush=True)


if __name__ == "__main__":
    main()
