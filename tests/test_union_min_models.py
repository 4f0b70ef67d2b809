"""benchmarks/union_min_models.py: a finished run's union over models recomputed at every u, against the truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("union_min_models")


def write_run(run, p_low: dict[str, dict[int, float]]) -> None:
    """A run directory as the DAG leaves it: per model a regions.tsv of 10 regions (p 0.6 except p_low), a union
    file the benchmark must ignore, and the planted regions 3 and 5."""
    for model, low in [*p_low.items(), ("union", {1: 1e-9})]:
        out = run / "results/occlusion" / model / "FA" / "regions.tsv"
        out.parent.mkdir(parents=True)
        p = [low.get(r, 0.6) for r in range(1, 11)]
        pd.DataFrame({"region": range(1, 11), "name": [f"r{r}" for r in range(1, 11)], "p_raw": p}).to_csv(
            out, sep="\t", index=False
        )
    truth = run / "results/truth/planted_regions.tsv"
    truth.parent.mkdir(parents=True)
    truth.write_text("region\teffect\tsize\n3\tsex\t1.2\n5\tsex\t-1.2\n7\tage\t-0.6\n")


def test_one_models_region_leaves_at_two(bench, tmp_path) -> None:
    """a and b both lean on 3 and 5 (planted), a alone on 9: u = 1 keeps 9 (precision 2/3), u = 2 drops it."""
    write_run(tmp_path, {"a": {3: 1e-4, 5: 1e-4, 9: 1e-4}, "b": {3: 1e-3, 5: 1e-3}})
    rows = pd.DataFrame(bench.union_rows(tmp_path, "fdr")).set_index("u")
    assert list(rows.index) == [1, 2] and (rows["models"] == 2).all()
    assert rows.loc[1, "spurious"] == "9" and np.isclose(rows.loc[1, "precision"], 2 / 3)
    assert rows.loc[2, "spurious"] == "-" and rows.loc[2, "precision"] == 1.0 and rows.loc[2, "recall"] == 1.0


def test_no_region_tables_is_a_clear_error(bench, tmp_path) -> None:
    with pytest.raises(SystemExit, match="no results/occlusion"):
        bench.union_rows(tmp_path, "fdr")
