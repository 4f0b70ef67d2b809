"""The 3D ViT, the MAE (masking, loss), the 2D -> 3D transfer, and the pretraining loop on a tiny tensor store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dmriscope.io import InputError, read_history
from dmriscope.models import build_model, count_parameters
from dmriscope.models.mae import MaskedAutoencoder, masked_mse, n_visible, patchify, random_masking, unpatchify
from dmriscope.models.vit import (
    ViTEncoder,
    build_slab_encoder,
    encoder_state_2d_to_3d,
    extend_pos_embed,
    freeze_backbone,
    load_pretrained_encoder,
    sincos_1d,
)
from dmriscope.pretrain import pretrain_mae2d, pretrain_mae3d

SMALL = {"dim": 32, "depth": 2, "heads": 2, "mlp_dim": 64, "patch": [6, 8, 8], "dropout": 0.0, "checkpointing": False}
TINY_GRID = (12, 32, 32)


def small_encoder_kwargs(**over):
    kw = {k: v for k, v in SMALL.items() if k != "patch"}
    kw.update(over)
    return kw


def test_paper_parameter_counts():
    with torch.device("meta"):
        model = build_model("vit", (180, 224, 224))
    assert model.backbone.n_patches == 5880
    assert count_parameters(model) == {"backbone": 24_143_232, "head": 770, "total": 24_144_002}


def test_forward_shapes_and_bad_input():
    torch.manual_seed(0)
    model = build_model("vit", (36, 48, 48), dim=96, depth=4, heads=4, mlp_dim=384)
    assert model.backbone.n_patches == 54
    logits = model(torch.randn(2, 1, 36, 48, 48))
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="expects input"):
        model(torch.randn(2, 1, 30, 48, 48))
    with pytest.raises(ValueError, match="not divisible"):
        build_model("vit", (35, 48, 48))
    with pytest.raises(ValueError, match="heads"):
        build_model("vit", (36, 48, 48), dim=100, heads=6)


def test_tokens_pool_reads_every_patch_token_in_place():
    """pool='tokens': the head reads the N patch tokens side by side (N*D), so a change confined to one patch's
    token reaches the head through that token's own weights, not through a mean over all patches."""
    torch.manual_seed(0)
    kw = {"dim": 32, "depth": 2, "heads": 2, "mlp_dim": 64, "patch": (6, 8, 8)}
    tokens, mean = build_model("vit", TINY_GRID, pool="tokens", **kw), build_model("vit", TINY_GRID, pool="mean", **kw)
    mean.load_state_dict({k: v for k, v in tokens.state_dict().items() if not k.startswith("head")}, strict=False)
    n = tokens.backbone.n_patches
    assert n == 2 * 4 * 4 and tokens.head.in_features == n * 32
    x = torch.randn(3, 1, *TINY_GRID)
    with torch.no_grad():
        flat, pooled = tokens.features(x), mean.features(x)
        encoded = tokens.backbone.encode_tokens(tokens.backbone.embed(x))[:, 1:]
    assert flat.shape == (3, n * 32) and tokens(x).shape == (3, 2)
    torch.testing.assert_close(flat.reshape(3, n, 32), encoded)  # token k at features [32k, 32k + 32)
    torch.testing.assert_close(flat.reshape(3, n, 32).mean(dim=1), pooled)
    with pytest.raises(ValueError, match="pool must be one of cls, mean, tokens"):
        build_model("vit", TINY_GRID, pool="max", **kw)


def test_checkpointing_gives_the_same_output_and_gradients():
    torch.manual_seed(0)
    plain = build_model("vit", (12, 32, 32), **SMALL)
    ckpt = build_model("vit", (12, 32, 32), **{**SMALL, "checkpointing": True})
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 12, 32, 32)
    grads = []
    for model in (plain, ckpt):
        model.train()
        model(x).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(plain(x), ckpt(x))
    torch.testing.assert_close(grads[0], grads[1])


def test_patchify_matches_the_patch_embedding_and_roundtrips():
    torch.manual_seed(0)
    enc3 = ViTEncoder(1, TINY_GRID, (6, 8, 8), **small_encoder_kwargs())
    x = torch.randn(2, 1, *TINY_GRID)
    conv = enc3.patch_embed.patch_embeddings
    tokens = conv(x).flatten(2).transpose(1, 2)
    linear = patchify(x, (6, 8, 8)) @ conv.weight.flatten(1).T + conv.bias
    torch.testing.assert_close(tokens, linear, rtol=1e-4, atol=1e-5)
    assert torch.equal(unpatchify(patchify(x, (6, 8, 8)), (6, 8, 8), TINY_GRID, 1), x)


def test_2d_patch_embedding_carries_over_to_3d():
    torch.manual_seed(0)
    enc2 = build_slab_encoder(TINY_GRID, (6, 8, 8), **small_encoder_kwargs())
    with torch.no_grad():  # make the 2D table non-trivial, as after training
        enc2.patch_embed.position_embeddings.add_(torch.randn_like(enc2.patch_embed.position_embeddings))
    enc3 = ViTEncoder(1, TINY_GRID, (6, 8, 8), **small_encoder_kwargs())
    enc3.load_state_dict(encoder_state_2d_to_3d(enc2.state_dict(), n_slabs=2))
    assert enc2.patch_embed.patch_embeddings.weight.shape == (32, 6, 8, 8)
    assert enc3.patch_embed.patch_embeddings.weight.shape == (32, 1, 6, 8, 8)
    x = torch.randn(3, 1, *TINY_GRID)
    raw3 = enc3.patch_embed.patch_embeddings(x).flatten(2).transpose(1, 2)  # (B, 2 * 16, D)
    with torch.no_grad():
        tok3 = enc3.embed(x)
        for k in range(2):
            slab = x[:, 0, 6 * k : 6 * (k + 1)]  # (B, 6, H, W): 6 slices as channels
            raw2 = enc2.patch_embed.patch_embeddings(slab).flatten(2).transpose(1, 2)
            torch.testing.assert_close(raw3[:, 16 * k : 16 * (k + 1)], raw2, rtol=1e-4, atol=1e-5)
            # with positions: the 2D tokens plus the slab's 1D sin-cos code
            expected = enc2.embed(slab) + sincos_1d(2, 32)[k]
            torch.testing.assert_close(tok3[:, 16 * k : 16 * (k + 1)], expected, rtol=1e-4, atol=1e-5)
    for name in ("cls_token", "cls_pos", "norm.weight", "blocks.1.attn.qkv.weight", "blocks.0.mlp.linear2.bias"):
        assert torch.equal(enc3.state_dict()[name], enc2.state_dict()[name])


def test_positional_extension_is_the_documented_one():
    def mae_1d_sincos(dim, positions):  # facebookresearch/mae get_1d_sincos_pos_embed_from_grid
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", positions.astype(np.float64), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    np.testing.assert_allclose(sincos_1d(5, 16).numpy(), mae_1d_sincos(16, np.arange(5)), rtol=1e-6, atol=1e-6)
    pos2d = torch.randn(1, 6, 16)  # in-plane grid 2 x 3
    pos3d = extend_pos_embed(pos2d, 4)
    assert pos3d.shape == (1, 24, 16)
    for k in range(4):
        for p in range(6):
            np.testing.assert_allclose(
                (pos3d[0, 6 * k + p] - pos2d[0, p]).numpy(), mae_1d_sincos(16, np.array([k]))[0], atol=1e-5
            )
    assert len({tuple(row.round(decimals=4).tolist()) for row in pos3d[0]}) == 24  # every position distinct


@pytest.mark.parametrize("n", [54, 9, 5880])
def test_masking_keeps_exactly_a_quarter(n):
    torch.manual_seed(1)
    tokens = torch.randn(4, n, 8)
    visible, mask, ids_restore = random_masking(tokens, 0.75)
    keep = round(n * 0.25)
    assert n_visible(n, 0.75) == keep and visible.shape == (4, keep, 8)
    assert torch.equal(mask.sum(1), torch.full((4,), float(n - keep)))
    for b in range(4):  # visible tokens are exactly the unmasked ones
        kept = tokens[b][mask[b] == 0]
        assert torch.equal(torch.sort(kept, dim=0).values, torch.sort(visible[b], dim=0).values)
        assert torch.equal(torch.sort(ids_restore[b]).values, torch.arange(n))
    assert not torch.equal(mask[0], mask[1])  # per-sample shuffles


def test_loss_counts_only_masked_patches():
    torch.manual_seed(2)
    enc = ViTEncoder(1, TINY_GRID, (6, 8, 8), **small_encoder_kwargs())
    mae = MaskedAutoencoder(enc, decoder_dim=24, decoder_depth=1, decoder_heads=2)
    x = torch.randn(2, 1, *TINY_GRID)
    loss, pred, mask = mae(x)
    assert pred.shape == (2, 32, 6 * 8 * 8) and mask.shape == (2, 32)
    visible = (mask == 0)[:, :, None]
    changed_visible = torch.where(visible, pred + 100.0, pred)
    torch.testing.assert_close(mae.loss(x, changed_visible, mask), loss)
    changed_masked = torch.where(visible, pred, pred + 1.0)
    assert mae.loss(x, changed_masked, mask) > loss + 0.5
    target = mae.patchify(x)
    manual = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
    torch.testing.assert_close(loss, manual)


def test_norm_pix_loss_targets_are_per_patch_normalised():
    torch.manual_seed(3)
    target = torch.randn(2, 5, 12) * 3 + 7
    mask = torch.tensor([[1, 0, 1, 1, 0], [0, 1, 1, 0, 1]], dtype=torch.float32)
    normed = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    assert masked_mse(target, normed, mask, norm_pix=True) < 1e-10
    assert masked_mse(target, target, mask, norm_pix=True) > 1.0


def test_freeze_backbone_leaves_only_the_head_trainable():
    model = build_model("vit", TINY_GRID, **SMALL)
    freeze_backbone(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    model(torch.randn(2, 1, *TINY_GRID)).sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())


# --- the pretraining loop on a tiny tensor store -------------------------------------------------------------------


def blob_volumes(n: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth structured volumes (n, 12, 32, 32), brain-like: 4 Gaussian blobs (sigma 3-6 voxels) at common
    positions, each subject with its own blob amplitudes (x 0.5-1.5) and centres jittered by up to 2 voxels."""
    grids = np.meshgrid(*[np.arange(s) for s in TINY_GRID], indexing="ij")
    centres = rng.uniform([2, 6, 6], [10, 26, 26], size=(4, 3))
    sigmas = rng.uniform(3, 6, size=4)
    out = np.zeros((n, *TINY_GRID), dtype=np.float32)
    for i in range(n):
        for centre, sigma in zip(centres + rng.uniform(-2, 2, size=(4, 3)), sigmas):
            d2 = sum((g - c) ** 2 for g, c in zip(grids, centre))
            out[i] += rng.uniform(0.5, 1.5) * np.exp(-d2 / (2 * sigma**2))
    return out


def write_store(folder: Path, volumes: np.ndarray, sets: list[str], voxel: bool = True) -> dict[str, str]:
    """A tensor store in the stack_tensors format: {metric}.npy, _index.tsv, _norm.json and brain_mask.npy."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "FA.npy", volumes.astype(np.float32))
    index = pd.DataFrame({"row": range(len(sets)), "subject": [f"s{i:02d}" for i in range(len(sets))], "set": sets})
    index["group"] = ["M", "F"] * (len(sets) // 2)
    index["age_bin"] = "22-25"
    index["label"] = (index["group"] == "M").astype(int)
    index.to_csv(folder / "FA_index.tsv", sep="\t", index=False)
    train = volumes[[i for i, s in enumerate(sets) if s == "train"]]
    if voxel:  # the workflow's default: voxel-wise training mean and SD (floored), clipped at 4
        std = np.maximum(train.std(0), np.percentile(train.std(0), 5))
        np.save(folder / "FA_norm.npy", np.stack([train.mean(0), std]).astype(np.float32))
        stats = {"mode": "voxel", "clip": 4.0}
    else:
        stats = {"mean": float(train.mean()), "std": float(train.std())}
    (folder / "FA_norm.json").write_text(json.dumps(stats))
    np.save(folder / "brain_mask.npy", np.ones(volumes.shape[1:], dtype=bool))
    files = [("tensors", "FA.npy"), ("index", "FA_index.tsv"), ("norm", "FA_norm.json")]
    files += [("brain_mask", "brain_mask.npy")]
    return {k: str(folder / f) for k, f in files + ([("norm_voxels", "FA_norm.npy")] if voxel else [])}


PRETRAIN = {
    "mae2d": {"epochs": 30, "batch_size": 4, "lr": 3e-3, "warmup_epochs": 1},
    "mae3d": {"epochs": 30, "batch_size": 2, "lr": 3e-3, "warmup_epochs": 1},
    "weight_decay": 0.05,
    "mask_ratio": 0.75,
    "decoder_dim": 24,
    "decoder_depth": 1,
    "decoder_heads": 2,
    "norm_pix_loss": False,
    "seed": 0,
}
SETS = ["train"] * 34 + ["val"] * 6


def run_both(store: dict[str, str], out: Path) -> tuple[list[dict], list[dict]]:
    pretrain_mae2d(
        **store,
        checkpoint=str(out / "mae2d.pt"),
        history=str(out / "h2.jsonl"),
        loss_png=str(out / "l2.png"),
        vit=SMALL,
        pretrain=PRETRAIN,
    )
    pretrain_mae3d(
        **store,
        init=str(out / "mae2d.pt"),
        checkpoint=str(out / "mae3d.pt"),
        history=str(out / "h3.jsonl"),
        loss_png=str(out / "l3.png"),
        figure=str(out / "fig" / "recon.png"),
        vit=SMALL,
        pretrain=PRETRAIN,
    )
    return read_history(out / "h2.jsonl"), read_history(out / "h3.jsonl")


@pytest.fixture(scope="module")
def blob_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("blobs")
    store = write_store(folder / "tensors", blob_volumes(len(SETS), np.random.default_rng(0)), SETS)
    return store, folder, run_both(store, folder)


def test_pretraining_beats_the_population_mean_on_structured_data(blob_run):
    """Each subject's blob amplitudes show in its visible patches: the MAE must predict the masked rest better than
    the population mean does (on the validation subjects it never trained on), not merely learn the mean."""
    _, folder, (h2, h3) = blob_run
    for history, stage in ((h2, "mae2d"), (h3, "mae3d")):
        assert [r["epoch"] for r in history] == list(range(0, 31))
        assert history[0]["loss"] is None  # epoch 0: the initialisation, scored on validation only
        assert set(history[1]) == {"epoch", "loss", "lr", "seconds", "val_loss", "val_baseline", "val_ratio"}
        assert history[-1]["val_ratio"] == pytest.approx(history[-1]["val_loss"] / history[-1]["val_baseline"])
        assert history[-1]["val_ratio"] < 0.8, (stage, [round(r["val_ratio"], 3) for r in history])
    for name in ("mae2d.pt", "mae3d.pt", "l2.png", "l3.png", "fig/recon.png"):
        assert (folder / name).stat().st_size > 0
    assert not list(folder.glob("**/*.part*"))  # nothing half-written left behind


def test_pretraining_loss_stays_at_the_variance_on_white_noise(blob_run, tmp_path):
    """Unpredictable data: masked patches of i.i.d. noise cannot be inferred, the loss stays near 1 (its variance)."""
    noise = np.random.default_rng(1).standard_normal((len(SETS), *TINY_GRID)).astype(np.float32)
    store = write_store(tmp_path / "tensors", noise, SETS)
    h2, h3 = run_both(store, tmp_path)
    blob_h3 = blob_run[2][1]
    for history in (h2, h3):
        assert history[-1]["loss"] > 0.9
        assert history[-1]["val_ratio"] > 0.95  # nothing to infer: no better than the population mean
    assert blob_h3[-1]["val_ratio"] < 0.85 * h3[-1]["val_ratio"]


def test_pretraining_is_deterministic(blob_run, tmp_path):
    store, _, _ = blob_run
    pretrain = {**PRETRAIN, "mae2d": {**PRETRAIN["mae2d"], "epochs": 2}}
    runs = []
    for i in range(2):
        pretrain_mae2d(
            **store,
            checkpoint=str(tmp_path / f"{i}.pt"),
            history=str(tmp_path / f"{i}.jsonl"),
            loss_png=str(tmp_path / f"{i}.png"),
            vit=SMALL,
            pretrain=pretrain,
        )
        rows = [json.loads(line) for line in (tmp_path / f"{i}.jsonl").read_text().splitlines()]
        runs.append([{k: v for k, v in row.items() if k != "seconds"} for row in rows])
    assert runs[0] == runs[1]
    a, b = (torch.load(tmp_path / f"{i}.pt", weights_only=True)["model"] for i in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_load_pretrained_encoder_from_both_stages(blob_run, tmp_path):
    _, folder, _ = blob_run
    ckpt3 = torch.load(folder / "mae3d.pt", weights_only=True)
    assert ckpt3["kind"] == "mae3d" and ckpt3["grid"] == list(TINY_GRID) and len(ckpt3["history"]) == 31
    model = build_model("vit", TINY_GRID, **SMALL)
    load_pretrained_encoder(model, folder / "mae3d.pt")
    for name, value in model.backbone.state_dict().items():
        assert torch.equal(value, ckpt3["model"][f"encoder.{name}"]), name
    ckpt2 = torch.load(folder / "mae2d.pt", weights_only=True)
    load_pretrained_encoder(model, folder / "mae2d.pt")
    assert torch.equal(
        model.backbone.patch_embed.patch_embeddings.weight[:, 0],
        ckpt2["model"]["encoder.patch_embed.patch_embeddings.weight"],
    )
    wrong = build_model("vit", TINY_GRID, **{**SMALL, "dim": 48})
    with pytest.raises(InputError, match="mae3d.pt"):
        load_pretrained_encoder(wrong, folder / "mae3d.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="junk.pt"):
        load_pretrained_encoder(model, tmp_path / "junk.pt")


def test_bad_store_is_a_one_line_input_error(blob_run, tmp_path):
    store, _, _ = blob_run
    with pytest.raises(InputError, match="models.vit.patch"):
        pretrain_mae2d(
            **store,
            checkpoint=str(tmp_path / "a.pt"),
            history=str(tmp_path / "a.jsonl"),
            loss_png=str(tmp_path / "a.png"),
            vit={**SMALL, "patch": [5, 8, 8]},
            pretrain=PRETRAIN,
        )
    index = pd.read_csv(store["index"], sep="\t")
    index["set"] = "test"
    index.to_csv(tmp_path / "idx.tsv", sep="\t", index=False)
    with pytest.raises(InputError, match="idx.tsv"):
        pretrain_mae2d(
            **{**store, "index": str(tmp_path / "idx.tsv")},
            checkpoint=str(tmp_path / "a.pt"),
            history=str(tmp_path / "a.jsonl"),
            loss_png=str(tmp_path / "a.png"),
            vit=SMALL,
            pretrain=PRETRAIN,
        )
    assert not (tmp_path / "a.pt").exists()
