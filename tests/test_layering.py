"""Imports flow one way, in pipeline order (../shared/DESIGN.md, "Layering"): a module imports only from its own
layer or an earlier one, whether the import sits at the top of the file or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dmriscope"

# pipeline order; a module not listed fails test_every_module_has_a_layer, so a new one must be placed
LAYERS: dict[str, tuple[str, ...]] = {
    "base": ("io", "config", "label", "regions", "tensor", "kurtosis", "shells", "normalise", "cohort.gradients"),
    "cohort": (
        "cohort.participant_row",
        "cohort.participants",
        "cohort.demographics",
        "cohort.hcp",
        "cohort.bids",
        "cohort.bids_export",
        "cohort.microstructure",
        "cohort.phantom",
        "cohort.partial_volume",
        "cohort.synthetic",
        "cohort.synthetic_template",
        "cohort.subjects",
        "cohort",
        "brain_size",
        "template",
    ),  # fmt: skip
    "dki": ("harmonise", "dki", "dki_validation"),
    "registration": ("registration_qc", "registration"),
    "split": ("split",),
    "tensors": ("smoothness", "tensors", "fold_tensors"),
    "models": ("models.registry", "models.cnn2d", "models.cnn3d", "models.vit", "models.mae", "models"),
    "training": (
        "train_settings",
        "device",
        "optim",
        "checkpoints",
        "augment",
        "engine",
        "linear_probe",
        "train_run",
        "pretrain_eval",
        "pretrain_figures",
        "pretrain",
    ),  # fmt: skip
    "evaluation": ("scores", "curves", "evaluate", "size_baseline", "region_baseline", "ensemble"),
    "occlusion": ("occlusion_slabs", "occlusion"),
    "statistics": ("stats", "truth"),
    "render": ("render.tables", "render.analysis_tables", "render.figures", "render.pretraining", "render"),
}
RANK = {module: rank for rank, modules in enumerate(LAYERS.values()) for module in modules}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> set[str]:
    """The dmriscope modules `path` imports (``from dmriscope.x import y`` gives x, or x.y where that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dmriscope"):
            base = node.module.removeprefix("dmriscope").lstrip(".")
            for alias in node.names:
                candidate = f"{base}.{alias.name}" if base else alias.name
                found.add(candidate if candidate in RANK else base)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("dmriscope.") for a in node.names if a.name.startswith("dmriscope.")}
    return found - {""}


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if _module_name(p))


def test_every_module_has_a_layer():
    assert sorted(_module_name(p) for p in SOURCES if _module_name(p) not in RANK) == []


@pytest.mark.parametrize("path", SOURCES, ids=_module_name)
def test_no_import_from_a_later_stage(path):
    own = RANK[_module_name(path)]
    later = sorted(m for m in _imported(path) if RANK.get(m, -1) > own)
    assert later == [], f"{_module_name(path)} ({list(LAYERS)[own]}) imports later stages: {later}"


def test_the_check_sees_a_violation(tmp_path):
    """The import parser finds top-level and function-level imports (so the test above can fail)."""
    source = tmp_path / "m.py"
    source.write_text("from dmriscope.stats import x\ndef f():\n    from dmriscope.render import tables\n")
    assert _imported(source) == {"stats", "render.tables"}
