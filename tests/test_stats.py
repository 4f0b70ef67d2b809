"""Wilcoxon tests, p-value corrections, Table 3, the model comparison, the truth check and the region figures."""

from __future__ import annotations

import itertools
import math

import matplotlib.image as mpimg
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dmriscope.io import InputError
from dmriscope.render.figures import choose_slices, label_point, render_region_figures
from dmriscope.render.tables import write_table
from dmriscope.stats import (
    adjust_pvalues,
    compare_models,
    partial_conjunction,
    region_statistics,
    significant_regions,
    simes,
    table3,
    union_statistics,
    union_statistics_files,
    wilcoxon_greater,
)
from dmriscope.truth import planted_sex_regions, precision_recall, truth_check


def exact_signed_rank_p(delta: np.ndarray) -> float:
    """P(W+ >= observed) under H0 by enumerating all 2^n sign patterns (no ties, no zeros)."""
    ranks = np.argsort(np.argsort(np.abs(delta))) + 1
    observed = ranks[delta > 0].sum()
    null = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=len(delta))]
    return float(np.mean(np.asarray(null) >= observed))


def test_wilcoxon_hand_cases() -> None:
    assert wilcoxon_greater([1, 2, 3, 4, 5]) == pytest.approx((15.0, 1 / 32))
    # ranks 1..5, W+ = 1 + 3 + 4 + 5 = 13; P(W+ >= 13) = P(complement sum <= 2) = 3/32
    assert wilcoxon_greater([1, -2, 3, 4, 5])[1] == pytest.approx(3 / 32)
    assert wilcoxon_greater([-1, -2, -3, -4, -5])[1] == pytest.approx(1.0)


def test_wilcoxon_matches_exact_enumeration() -> None:
    rng = np.random.default_rng(0)
    for shift in (0.0, 0.5, 1.0):
        delta = rng.normal(shift, 1.0, size=10)
        assert wilcoxon_greater(delta)[1] == pytest.approx(exact_signed_rank_p(delta), abs=1e-12)


def test_all_zero_delta_gets_p_one() -> None:
    assert wilcoxon_greater(np.zeros(12)) == (0.0, 1.0)
    assert wilcoxon_greater([]) == (0.0, 1.0)


def test_bh_and_holm_on_a_known_vector() -> None:
    fdr, holm = adjust_pvalues([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(fdr, [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(holm, [0.03, 0.06, 0.06, 0.02])


def delta_table() -> pd.DataFrame:
    """Region 1: all positive; region 2: all zero; region 3: all negative; 6 subjects."""
    rows = []
    for i in range(6):
        for region, value in ((1, 0.1 * (i + 1)), (2, 0.0), (3, -0.01 * (i + 1))):
            rows.append({"subject": f"s{i}", "region": region, "name": f"r{region}", "p_before": 0.9,
                         "p_after": 0.9 - value, "delta_p": value})  # fmt: skip
    return pd.DataFrame(rows)


def test_region_statistics_hand_case() -> None:
    atlas = np.zeros((4, 4, 4), dtype=np.int16)
    atlas[0] = 1  # 16 voxels
    atlas[1, :2] = 2  # 8 voxels
    atlas[2, 0, 0] = 3  # 1 voxel
    wm = atlas > 0
    wm[3] = True  # WM beyond the atlas: 16 more voxels, 41 in all
    table = region_statistics(delta_table(), atlas, wm, alpha=0.05, scale="probability").set_index("region")
    assert table.loc[1, "p_raw"] == pytest.approx(1 / 64)
    assert table.loc[2, "p_raw"] == 1.0
    assert table.loc[3, "p_raw"] == pytest.approx(1.0)
    np.testing.assert_allclose(table["p_fdr"], [3 / 64, 1.0, 1.0])
    np.testing.assert_allclose(table["p_holm"], [3 / 64, 1.0, 1.0])
    np.testing.assert_allclose(table["volume_fraction"], [16 / 41, 8 / 41, 1 / 41])
    assert table.loc[1, "median_delta_p"] == pytest.approx(0.35)
    assert significant_regions(table.reset_index(), "raw") == [1]


def test_logit_and_probability_scales_rank_differently_by_hand() -> None:
    """Five confident subjects lose a little probability (0.999 -> 0.99..0.994: delta_p <= 0.009, log-odds drops
    1.8-2.3), one
    unsure subject gains a lot (0.5 -> 0.6: delta_p -0.1, log-odds -0.41). Probability ranks put the gain last:
    W+ = 1+2+3+4+5 = 15, P(W+ >= 15) = 14/64 (subsets of 1..6 with sum <= 6). Log-odds ranks put it first:
    W+ = 2+...+6 = 20, P = 2/64."""
    p_before = np.array([0.999] * 5 + [0.5])
    p_after = np.array([0.990, 0.991, 0.992, 0.993, 0.994, 0.6])  # no ties: scipy's exact distribution
    table = pd.DataFrame({"subject": [f"s{i}" for i in range(6)], "region": 1, "name": "r1", "p_before": p_before,
                          "p_after": p_after, "delta_p": p_before - p_after})  # fmt: skip
    atlas = np.ones((2, 2, 2), dtype=np.int16)
    by_p = region_statistics(table, atlas, atlas > 0, scale="probability").iloc[0]
    by_logit = region_statistics(table, atlas, atlas > 0, scale="logit").iloc[0]
    assert (by_p["statistic"], by_p["p_raw"]) == (15.0, pytest.approx(14 / 64))
    assert (by_logit["statistic"], by_logit["p_raw"]) == (20.0, pytest.approx(2 / 64))
    drops = np.log(p_before / (1 - p_before)) - np.log(p_after / (1 - p_after))
    assert by_logit["median_delta_logit"] == pytest.approx(np.median(drops))
    with pytest.raises(InputError, match="occlusion.test_scale"):
        region_statistics(table, atlas, atlas > 0, scale="rank")


def test_table3_lists_regions() -> None:
    atlas = np.repeat(np.arange(1, 4, dtype=np.int16), 4).reshape(3, 2, 2)
    regions = region_statistics(delta_table(), atlas, atlas > 0)
    out = table3({("cnn3d", "FA"): regions}, {"FA": union_statistics({"cnn3d": regions})})
    assert out.loc[0, "regions_raw"] == "1 r1" and out.loc[0, "n_raw"] == 1
    assert out.loc[0, "regions_fdr"] == "1 r1"
    assert out.loc[1, "model"] == "union" and out.loc[1, "regions_fdr"] == "1 r1"  # one model: its own p
    two = table3({("a", "MD"): MODEL_A, ("b", "MD"): MODEL_B}, {"MD": union_statistics({"a": MODEL_A, "b": MODEL_B})})
    two = two.set_index("model")
    assert two.loc["b", "regions_fdr"] == "5 r5; 9 r9" and two.loc["union", "regions_fdr"] == "3 r3; 5 r5"


def predictions(p_positive: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject": [f"s{i}" for i in range(len(labels))],
            "label": labels,
            "p_negative": 1 - p_positive,
            "p_positive": p_positive,
        }
    )


def test_compare_models_hand_case() -> None:
    labels = np.array([1, 0, 1, 0, 1, 0])
    ref_correct = np.array([0.6, 0.7, 0.55, 0.8, 0.65, 0.52])
    better = ref_correct + np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])

    def to_p_male(c):
        return np.where(labels == 1, c, 1 - c)

    preds = {
        ("vit_scratch", "FA"): predictions(to_p_male(ref_correct), labels),
        ("cnn3d", "FA"): predictions(to_p_male(better), labels),
        ("cnn2d", "FA"): predictions(to_p_male(ref_correct), labels),
    }
    out = compare_models(preds, reference="vit_scratch").set_index("model")
    assert out.loc["cnn3d", "p_value"] == pytest.approx(2 / 64)  # all 6 differences positive, two-sided
    assert out.loc["cnn3d", "median_difference"] == pytest.approx(0.035)
    assert out.loc["cnn2d", "p_value"] == 1.0  # identical predictions


def test_precision_recall_hand_cases() -> None:
    r = precision_recall({3, 5, 17}, {3, 5, 9})
    assert (r["true_positives"], r["false_positives"], r["false_negatives"]) == (2, 1, 1)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    r = precision_recall({3, 5}, set())
    assert math.isnan(r["precision"]) and r["recall"] == 0.0
    r = precision_recall(set(), {4})
    assert r["precision"] == 0.0 and math.isnan(r["recall"])


def fake_regions(p_low: dict[int, float]) -> pd.DataFrame:
    """10 regions with p = 0.6 except `p_low`; the BH flags computed like region_statistics does."""
    p = np.array([p_low.get(r, 0.6) for r in range(1, 11)])
    return pd.DataFrame(
        {"region": range(1, 11), "name": [f"r{r}" for r in range(1, 11)], "p_raw": p, "significant_raw": p < 0.05}
    ).assign(significant_fdr=adjust_pvalues(p)[0] < 0.05)


# model A flags 3 and 5; model B flags 5 and 9 (BH: 0.001 * 10 / 1, 0.008 * 10 / 2 = 0.04)
MODEL_A, MODEL_B = fake_regions({3: 0.001, 5: 0.001}), fake_regions({5: 0.001, 9: 0.008})


def test_simes_and_union_statistics_hand_case() -> None:
    assert simes([0.6, 0.008]) == pytest.approx(0.016)  # min(2 * 0.008 / 1, 2 * 0.6 / 2)
    assert simes([0.001, 0.001]) == pytest.approx(0.001)  # min(2 * 0.001 / 1, 2 * 0.001 / 2)
    assert simes([0.04, 0.03, 0.9]) == pytest.approx(0.06)  # min(3 * 0.03, 3 * 0.04 / 2, 3 * 0.9 / 3)
    union = union_statistics({"a": MODEL_A, "b": MODEL_B}).set_index("region")
    assert union.loc[3, "p_raw"] == pytest.approx(0.002) and union.loc[9, "p_raw"] == pytest.approx(0.016)
    # BH over 10 regions: sorted 0.001 (5), 0.002 (3), 0.016 (9) -> 0.01, 0.01, 0.016 * 10 / 3
    assert union.loc[9, "p_fdr"] == pytest.approx(0.016 * 10 / 3)
    assert sorted(union.index[union["significant_fdr"]]) == [3, 5]
    assert sorted(union.index[union["significant_raw"]]) == [3, 5, 9]
    assert (union["n_models"] == 2).all() and union.loc[9, "name"] == "r9"


def test_partial_conjunction_hand_cases_and_simes() -> None:
    """u = 1 is Simes, u = k the largest p; in between the Simes p of the k - u + 1 largest (Benjamini-Heller)."""
    p = [0.001, 0.04, 0.03, 0.9]
    assert partial_conjunction(p, 1) == pytest.approx(simes(p))
    assert partial_conjunction(p, 4) == pytest.approx(0.9)
    assert partial_conjunction(p, 2) == pytest.approx(0.06)  # Simes of 0.03, 0.04, 0.9: min(0.09, 0.06, 0.9)
    assert partial_conjunction(p[:1], 2) == 1.0  # one model cannot show two


def test_partial_conjunction_needs_two_models_and_holds_its_level() -> None:
    """One model's strong p alone flags a region at u = 1, not at u = 2; and when only one of five models has
    an effect (the partial-conjunction null for u = 2) the rejection rate stays at or below the level."""
    assert partial_conjunction([1e-6, 0.5, 0.7, 0.8, 0.9], 1) < 1e-4
    assert partial_conjunction([1e-6, 0.5, 0.7, 0.8, 0.9], 2) > 0.5
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(4000, 5))
    p[:, 0] = 1e-9  # one real effect
    rate = np.mean([partial_conjunction(row, 2) < 0.05 for row in p])
    assert rate <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / len(p))
    assert np.mean([partial_conjunction(row, 1) < 0.05 for row in p]) == 1.0  # Simes rejects the global null


def test_union_with_min_models_two() -> None:
    """Model A alone flags 3, B alone 9, both 5: at least two models leaves 5 only; too many models is refused."""
    union = union_statistics({"a": MODEL_A, "b": MODEL_B}, min_models=2).set_index("region")
    assert sorted(union.index[union["significant_fdr"]]) == [5]
    assert (union["min_models"] == 2).all() and union.loc[3, "p_raw"] == pytest.approx(0.6)
    with pytest.raises(InputError, match="occlusion.union_min_models"):
        union_statistics({"a": MODEL_A, "b": MODEL_B}, min_models=3)


def test_union_file_is_the_union_of_one_metrics_models(tmp_path) -> None:
    """The DAG's union file holds the same test as `union_statistics`; mixing metrics is refused."""
    paths = []
    for model, table in (("a", MODEL_A), ("b", MODEL_B)):
        paths.append(tmp_path / model / "MD" / "regions.tsv")
        paths[-1].parent.mkdir(parents=True)
        table.to_csv(paths[-1], sep="\t", index=False)
    out = tmp_path / "union" / "MD" / "regions.tsv"
    union_statistics_files(regions=[str(p) for p in paths], union=str(out))
    written = pd.read_csv(out, sep="\t")
    expected = union_statistics({"a": MODEL_A, "b": MODEL_B})
    assert written["significant_fdr"].tolist() == expected["significant_fdr"].tolist()
    np.testing.assert_allclose(written["p_raw"], expected["p_raw"], rtol=1e-5)
    other = tmp_path / "c" / "FA" / "regions.tsv"
    other.parent.mkdir(parents=True)
    MODEL_A.to_csv(other, sep="\t", index=False)
    with pytest.raises(InputError, match="per metric"):
        union_statistics_files(regions=[str(paths[0]), str(other)], union=str(tmp_path / "bad.tsv"))


def test_truth_check_rows_and_union(tmp_path) -> None:
    planted_tsv = tmp_path / "planted.tsv"
    pd.DataFrame(
        {
            "region": [3, 5, 11, 7],
            "name": ["a", "b", "c", "d"],
            "effect": ["sex", "sex", "age", "sex"],
            "size": [1.2, -1.2, -0.6, 0.0],
        }
    ).to_csv(planted_tsv, sep="\t", index=False)
    planted = planted_sex_regions(str(planted_tsv))
    assert planted == {3, 5}
    models = {"cnn2d": fake_regions({3: 0.001}), "cnn3d": MODEL_B}
    out = truth_check({(m, "FA"): t for m, t in models.items()}, {"FA": union_statistics(models)}, planted)
    pooled = out[out["model"] == "union_of_models"].iloc[0]
    assert (pooled["true_positives"], pooled["false_positives"], pooled["recall"]) == (2, 1, 1.0)
    assert pooled["precision"] == pytest.approx(2 / 3) and pooled["spurious"] == "9"
    union = out[out["model"] == "union"].iloc[0]  # region 9: Simes 0.016, BH 0.053 -> not significant
    assert (union["found"], union["spurious"], union["precision"]) == ("3, 5", "-", 1.0)
    assert out[out["model"] == "cnn2d"].iloc[0]["missed"] == "5"
    assert list(out["model"]) == ["cnn2d", "cnn3d", "union_of_models", "union"]


def test_write_table(tmp_path) -> None:
    write_table(pd.DataFrame({"a": [1.23456789], "b": ["x"]}), tmp_path / "t.tsv", tmp_path / "t.md", "T")
    assert "1.235" in (tmp_path / "t.md").read_text()
    assert pd.read_csv(tmp_path / "t.tsv", sep="\t").shape == (1, 2)


def test_choose_slices_covers_every_region() -> None:
    atlas = np.zeros((5, 5, 10), dtype=np.int16)
    atlas[1, 1, 2], atlas[2, 2, 2], atlas[1, 1, 7], atlas[3, 3, 5] = 1, 2, 3, 4
    assert choose_slices(atlas, [1, 2, 3], n_slices=4) == [2, 7]
    chosen = choose_slices(atlas, [1, 2, 3, 4], n_slices=2)  # cannot cover all: the 2-region slice comes first
    assert len(chosen) == 2 and 2 in chosen
    assert choose_slices(atlas, [], n_slices=3) == [5]
    ring = np.ones((5, 5), bool)
    ring[2, 2] = False
    assert ring[label_point(ring)]  # the label lies inside a region with a hole in its centre


@pytest.mark.parametrize("zoom", [4.0, 1.0])
def test_region_figures_are_written(tmp_path, zoom: float) -> None:
    shape = (12, 14, 12) if zoom == 4.0 else (48, 56, 48)
    affine = np.diag([zoom, zoom, zoom, 1.0])
    rng = np.random.default_rng(0)
    atlas = rng.integers(0, 6, size=shape).astype(np.int16)
    nib.save(nib.Nifti1Image(rng.random(shape).astype(np.float32), affine), tmp_path / "t.nii.gz")
    nib.save(nib.Nifti1Image(atlas, affine), tmp_path / "a.nii.gz")
    paths = {}
    for model, sig in (("cnn2d", [1, 4]), ("cnn3d", [])):
        table = pd.DataFrame(
            {
                "region": range(1, 6),
                "name": [f"n{r}" for r in range(1, 6)],
                "median_delta_p": np.linspace(-0.1, 0.2, 5),
                "p_raw": [0.01 if r in sig else 0.5 for r in range(1, 6)],
                "significant_raw": [r in sig for r in range(1, 6)],
                "significant_fdr": [r == 1 for r in range(1, 6)],
            }
        )
        paths[model] = tmp_path / model / "FA" / "regions.tsv"
        paths[model].parent.mkdir(parents=True)
        table.to_csv(paths[model], sep="\t", index=False)
    labels = tmp_path / "labels.tsv"
    pd.DataFrame({"index": range(1, 6), "name": [f"n{r}" for r in range(1, 6)]}).to_csv(labels, sep="\t", index=False)
    sig_png, heat_png, union = tmp_path / "sig.png", tmp_path / "heat.png", tmp_path / "union" / "FA" / "regions.tsv"
    union_statistics_files(regions=[str(p) for p in paths.values()], union=str(union))
    render_region_figures(
        regions=list(paths.values()),
        union=union,
        template=tmp_path / "t.nii.gz",
        atlas=tmp_path / "a.nii.gz",
        labels=labels,
        significant=sig_png,
        heatmap=heat_png,
        metric="FA",
    )
    for png in (sig_png, heat_png):
        image = mpimg.imread(png)
        assert image.shape[0] > 300 and image.shape[1] > 300
        assert image[..., :3].std() > 0.05  # not blank
