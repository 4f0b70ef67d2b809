"""The template-space phantom brain: tissue map, a 48-region white-matter atlas with JHU-ICBM names, fibre directions.

Geometry (world mm, RAS, x = left-right first, origin at the grid centre): an ellipsoidal brain with semi-axes
``BRAIN_SEMI_AXES_MM`` (140 x 175 x 120 mm), a CSF rim, a cortical ribbon of varying thickness, lateral ventricles
(CSF), thalami and lentiform nuclei (deep grey matter), white matter inside. Anatomical positions are written in an
MNI-like frame and mapped into the phantom by `mni_to_phantom` (shift to the brain centre, squash height).

The atlas is a power diagram (a Voronoi partition with per-region weights) of the white matter around seed points
placed per region at roughly their JHU position; the weights are tuned so each region reaches a target share of
the white matter (its ``rel_size``). It is computed on the right half (x >= 0) and mirrored, so L/R pairs are exact
mirror images and midline regions (1-6) are symmetric. Every white-matter voxel carries a label.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from dmriscope.cohort.microstructure import BACKGROUND, CSF, GM, WM

log = logging.getLogger(__name__)

BRAIN_SEMI_AXES_MM = np.array([70.0, 87.5, 60.0])
MNI_CENTRE_MM = np.array([0.0, -17.0, 4.0])  # the MNI point at the phantom's centre
MNI_SCALE = np.array([1.0, 1.0, 0.79])  # MNI brain height 152 mm (incl. cerebellum) -> 120 mm
CSF_RIM_MM = 3.5
CORTEX_MM = (8.0, 3.0)  # cortical thickness: mean, amplitude of its smooth modulation
FAN = 0.5  # how much fibre directions fan out per FAN_LENGTH_MM away from the region centre
FAN_LENGTH_MM = 40.0
# (MNI centre, MNI semi-axes) of right-hemisphere structures, mirrored to the left
VENTRICLES = (((17.0, -5.0, 14.0), (5.0, 22.0, 6.0)),)
DEEP_GM = (((11.0, -18.0, 6.0), (7.0, 13.0, 8.0)), ((25.0, 2.0, 0.0), (6.0, 14.0, 9.0)))


@dataclass(frozen=True)
class RegionSpec:
    """One atlas region (or L/R pair, given for the right side): MNI seeds, fibre direction, mean f, size share."""

    seeds: tuple[tuple[float, float, float], ...]
    direction: tuple[float, float, float]
    f_mean: float
    rel_size: float


_R = RegionSpec
# index -> spec; odd indices 7..47 are the right (R) member of a pair whose left member is index + 1
REGION_SPECS: dict[int, RegionSpec] = {
    1: _R(((18, -55, -35),), (0.6, -0.7, 0.2), 0.55, 2.0),  # middle cerebellar peduncle
    2: _R(((0, -25, -32),), (1, 0, 0), 0.55, 0.8),  # pontine crossing tract
    3: _R(((0, 28, 8), (12, 30, 8)), (1, 0.4, 0), 0.65, 1.2),  # genu of CC
    4: _R(((0, -5, 25), (14, -5, 28)), (1, 0, 0.3), 0.65, 1.8),  # body of CC
    5: _R(((0, -38, 12), (12, -38, 14)), (1, -0.4, 0), 0.68, 1.4),  # splenium of CC
    6: _R(((0, -12, 12),), (0, 1, -0.3), 0.5, 0.6),  # fornix (column and body)
    7: _R(((8, -25, -40),), (0, 0.1, 1), 0.62, 0.8),  # corticospinal tract
    9: _R(((6, -38, -28),), (0, 0.2, 1), 0.55, 0.6),  # medial lemniscus
    11: _R(((12, -45, -40),), (0.3, -0.5, 0.8), 0.55, 0.6),  # inferior cerebellar peduncle
    13: _R(((7, -38, -18),), (-0.3, 0.6, 0.7), 0.55, 0.6),  # superior cerebellar peduncle
    15: _R(((16, -18, -12),), (0.2, 0.3, 1), 0.62, 0.8),  # cerebral peduncle
    17: _R(((18, 10, 5),), (0.3, 0.7, 0.6), 0.55, 0.8),  # anterior limb of internal capsule
    19: _R(((22, -10, 5),), (0.2, -0.1, 1), 0.62, 0.9),  # posterior limb of internal capsule
    21: _R(((32, -28, 6),), (0.3, -0.5, 0.8), 0.55, 0.8),  # retrolenticular internal capsule
    23: _R(((22, 28, 15),), (0.2, 0.8, 0.5), 0.5, 1.4),  # anterior corona radiata
    25: _R(((26, -8, 34),), (0.2, 0, 1), 0.52, 1.6),  # superior corona radiata
    27: _R(((26, -42, 28),), (0.2, -0.6, 0.8), 0.5, 1.0),  # posterior corona radiata
    29: _R(((34, -58, 6),), (0.2, 1, 0), 0.55, 1.0),  # posterior thalamic radiation
    31: _R(((42, -28, -8),), (0, 1, 0.1), 0.53, 1.0),  # sagittal stratum
    33: _R(((32, 6, 2),), (0, 1, 0.5), 0.48, 0.9),  # external capsule
    35: _R(((9, -15, 34),), (0, 1, 0), 0.55, 0.6),  # cingulum (cingulate gyrus)
    37: _R(((26, -36, -10),), (0, 0.7, 0.7), 0.5, 0.5),  # cingulum (hippocampus)
    39: _R(((28, -14, -4),), (0, 0.8, 0.6), 0.5, 0.5),  # fornix (cres) / stria terminalis
    41: _R(((40, -22, 32),), (0, 1, 0), 0.52, 1.4),  # superior longitudinal fasciculus
    43: _R(((20, 10, 20),), (0, 1, 0.2), 0.5, 0.4),  # superior fronto-occipital fasciculus
    45: _R(((34, 8, -14),), (0.3, 1, 0.3), 0.5, 0.5),  # uncinate fasciculus
    47: _R(((30, -46, 14),), (0.2, -0.3, 1), 0.55, 0.4),  # tapetum
}
N_REGIONS = 48
MIDLINE = range(1, 7)


def spec_of(index: int) -> RegionSpec:
    """The spec of region `index` (a left member shares its right partner's spec)."""
    return REGION_SPECS[index if index in REGION_SPECS else index - 1]


def mirror_label(index: int) -> int:
    """The contralateral region of `index` (midline regions map to themselves)."""
    if index in MIDLINE or index == 0:
        return index
    return index + 1 if index % 2 else index - 1


def region_f_means() -> np.ndarray:
    """Population-mean intra-axonal fraction per region, (49,) indexed by label (entry 0 unused, 0.5)."""
    out = np.full(N_REGIONS + 1, 0.5)
    for index in range(1, N_REGIONS + 1):
        out[index] = spec_of(index).f_mean
    return out


def mni_to_phantom(points: np.ndarray) -> np.ndarray:
    """MNI-like mm coordinates (..., 3) -> phantom world mm."""
    return (np.asarray(points, dtype=np.float64) - MNI_CENTRE_MM) * MNI_SCALE


def template_affine(shape: tuple[int, int, int], voxel_mm: float) -> np.ndarray:
    """RAS voxel-to-world affine (4, 4) with isotropic `voxel_mm` voxels and the world origin at the grid centre."""
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = -voxel_mm * (np.asarray(shape, dtype=np.float64) - 1) / 2
    return affine


def grid_points(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """World mm coordinates of every voxel centre, (X, Y, Z, 3)."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(np.float64)
    return index @ affine[:3, :3].T + affine[:3, 3]


def _inside(points: np.ndarray, centre_mni: tuple, semi_mni: tuple) -> np.ndarray:
    """Points (..., 3) inside an MNI-defined ellipsoid or its left-right mirror."""
    centre, semi = mni_to_phantom(centre_mni), np.asarray(semi_mni) * MNI_SCALE
    mirrored = points * np.array([-1.0, 1.0, 1.0])
    return ((((points - centre) / semi) ** 2).sum(-1) <= 1) | ((((mirrored - centre) / semi) ** 2).sum(-1) <= 1)


def surface_depth(points: np.ndarray) -> np.ndarray:
    """Approximate depth (mm) below the brain's ellipsoidal surface, (...,); negative outside."""
    scaled = points / BRAIN_SEMI_AXES_MM
    r = np.sqrt((scaled**2).sum(-1))
    grad = np.sqrt(((points / BRAIN_SEMI_AXES_MM**2) ** 2).sum(-1)) / np.maximum(r, 1e-9)
    return (1.0 - r) / np.maximum(grad, 1e-9)


def radial_directions(points: np.ndarray) -> np.ndarray:
    """Unit normals of the ellipsoid family through each point (N, 3): the cortex's radial direction."""
    normal = points / BRAIN_SEMI_AXES_MM**2
    norm = np.linalg.norm(normal, axis=-1, keepdims=True)
    return np.where(norm > 0, normal / np.maximum(norm, 1e-12), np.array([0.0, 0.0, 1.0]))


def tissue_map(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """Tissue codes (BACKGROUND, CSF, GM, WM) on the grid, int8 (X, Y, Z)."""
    points = grid_points(shape, affine)
    depth = surface_depth(points)
    n = radial_directions(points.reshape(-1, 3)).reshape(points.shape)
    folds = np.cos(5 * n[..., 0]) * np.cos(6 * n[..., 1] + 0.3) * np.cos(4 * n[..., 2])  # even in x: symmetric
    cortex = CORTEX_MM[0] + CORTEX_MM[1] * folds
    tissue = np.full(shape, BACKGROUND, dtype=np.int8)
    tissue[depth >= 0] = CSF
    tissue[depth >= CSF_RIM_MM] = GM
    tissue[depth >= CSF_RIM_MM + cortex] = WM
    for centre, semi in DEEP_GM:
        tissue[_inside(points, centre, semi) & (depth > 0)] = GM
    for centre, semi in VENTRICLES:
        tissue[_inside(points, centre, semi) & (depth > 0)] = CSF
    return tissue


def _half_seeds() -> tuple[np.ndarray, np.ndarray]:
    """Seed points (S, 3, phantom mm) and their labels (S,) for the right half: midline + right regions."""
    points, labels = [], []
    for index, spec in REGION_SPECS.items():
        for seed in spec.seeds:
            points.append(mni_to_phantom(seed))
            labels.append(index)
    return np.asarray(points), np.asarray(labels)


def _snap(seeds: np.ndarray, wm_points: np.ndarray) -> np.ndarray:
    """Move each seed onto its nearest white-matter voxel centre (seeds in deep GM or CSF at coarse grids)."""
    d2 = ((seeds[:, None, :] - wm_points[None]) ** 2).sum(-1)
    return wm_points[d2.argmin(1)]


def _power_labels(sq_dist: np.ndarray, seed_labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Label of each point: the seed minimising |p - s|^2 - weight[label(s)]; sq_dist (P, S) in mm^2."""
    return seed_labels[(sq_dist - weights[seed_labels][None]).argmin(1)]


def _balance_weights(
    sq_dist: np.ndarray, seed_labels: np.ndarray, target: np.ndarray, scale: float, iterations: int
) -> np.ndarray:
    """Power weights (49,) that bring each label's voxel count near `target` (damped multiplicative steps)."""
    weights = np.zeros(len(target))
    present = target > 0
    for _ in range(iterations):
        sizes = np.bincount(_power_labels(sq_dist, seed_labels, weights), minlength=len(target))
        ratio = np.log(target[present] / np.maximum(sizes[present], 0.5))
        weights[present] += 0.05 * scale * np.clip(ratio, -1.0, 1.0)
    return weights


def atlas_map(tissue: np.ndarray, affine: np.ndarray, iterations: int = 400) -> np.ndarray:
    """The 48-region atlas on the grid, int16 (X, Y, Z): every WM voxel labelled, 0 elsewhere.

    Power-diagram weights are tuned (`iterations` multiplicative steps) so region sizes approach their targets.
    """
    points = grid_points(tissue.shape, affine)
    x = points[..., 0]
    wm = tissue == WM
    half = wm & (x >= -1e-6)
    half_points = points[half]
    seeds, seed_labels = _half_seeds()
    seeds = _snap(seeds, half_points)
    rel = np.array([spec_of(i).rel_size for i in range(1, N_REGIONS + 1)])
    target = np.zeros(N_REGIONS + 1)
    target[1:] = rel / rel.sum() * wm.sum()
    target[list(MIDLINE)] /= 2  # the half holds half of a midline region
    scale = (half.sum() / len(REGION_SPECS)) ** (2 / 3) * affine[0, 0] ** 2  # ~ squared cell radius, mm^2
    sq_dist = ((half_points[:, None, :] - seeds[None]) ** 2).sum(-1)
    weights = _balance_weights(sq_dist, seed_labels, target, scale, iterations)
    labels = _power_labels(sq_dist, seed_labels, weights)
    midline_column = np.abs(half_points[:, 0]) < 1e-6
    if midline_column.any():  # odd grids: the x = 0 column holds midline regions only
        is_mid = np.isin(seed_labels, list(MIDLINE))
        labels[midline_column] = _power_labels(sq_dist[midline_column][:, is_mid], seed_labels[is_mid], weights)
    atlas = np.zeros(tissue.shape, dtype=np.int16)
    atlas[half] = labels
    mirror = np.array([mirror_label(i) for i in range(N_REGIONS + 1)], dtype=np.int16)
    left = wm & (x < -1e-6)
    atlas[left] = mirror[atlas[::-1][left]]  # grid is symmetric about x = 0: index i mirrors to nx - 1 - i
    return atlas


def fibre_directions(labels: np.ndarray, tissue: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Unit fibre directions (N, 3) at template-space points (N, 3, mm) with their atlas labels and tissue codes.

    White matter: the region's direction fanning out smoothly with distance from the region's seed centre
    (mirrored in x for the left hemisphere); grey matter, CSF and unlabelled voxels: radial to the brain surface.
    """
    points = np.asarray(points, dtype=np.float64)
    right = points.copy()
    right[:, 0] = np.abs(right[:, 0])  # directions are defined for the right hemisphere, mirrored for the left
    base = np.zeros((N_REGIONS + 1, 3))
    centre = np.zeros((N_REGIONS + 1, 3))
    for index in range(1, N_REGIONS + 1):
        spec = spec_of(index)
        base[index] = np.asarray(spec.direction) / np.linalg.norm(spec.direction)
        centre[index] = mni_to_phantom(np.mean(spec.seeds, axis=0))
    b, offset = base[labels], (right - centre[labels]) / FAN_LENGTH_MM
    offset -= (offset * b).sum(-1, keepdims=True) * b
    direction = b + FAN * offset
    direction[:, 0] *= np.where(points[:, 0] < 0, -1.0, 1.0)
    fibre = (tissue == WM) & (labels > 0)
    direction = np.where(fibre[:, None], direction, radial_directions(points))
    return direction / np.linalg.norm(direction, axis=1, keepdims=True)


def texture_field(shape: tuple[int, int, int], voxel_mm: float, smoothness_mm: float, seed: int) -> np.ndarray:
    """A smooth Gaussian random field with mean 0 and SD 1, float32 (X, Y, Z) (smoothing sigma in mm)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7E87]))
    field = gaussian_filter(rng.standard_normal(shape), sigma=smoothness_mm / voxel_mm, mode="reflect")
    return ((field - field.mean()) / field.std()).astype(np.float32)


@dataclass(frozen=True)
class Phantom:
    """The template-space phantom: tissue codes (int8) and atlas labels (int16), both (X, Y, Z), and the affine."""

    tissue: np.ndarray
    atlas: np.ndarray
    affine: np.ndarray


def build_phantom(shape: tuple[int, int, int], voxel_mm: float) -> Phantom:
    """Tissue map and atlas on a `shape` grid of `voxel_mm` voxels (deterministic: no random numbers)."""
    affine = template_affine(shape, voxel_mm)
    tissue = tissue_map(shape, affine)
    atlas = atlas_map(tissue, affine)
    sizes = np.bincount(atlas.ravel(), minlength=N_REGIONS + 1)[1:]
    log.info(
        "phantom %s at %.1f mm: %d brain, %d WM voxels; region sizes min %d median %d max %d",
        shape, voxel_mm, (tissue > 0).sum(), (tissue == WM).sum(), sizes.min(), np.median(sizes), sizes.max(),
    )  # fmt: skip
    return Phantom(tissue=tissue, atlas=atlas, affine=affine)
