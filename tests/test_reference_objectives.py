"""Objective and optimisation details against straightforward re-implementations of the reference code's
formulas (MMEarth-train / MAE normalised-pixel target, FCMAE mask count, open_clip logit-scale handling and
weight-decay exclusions, FCMAE/MMEarth learning-rate scaling)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from _tiny import IMAGE, inputs, tiny_config

from modeling_geomeld import GeoMeldForPreTraining, contrastive_loss
from modeling_geomeld.masking import random_patch_mask
from modeling_geomeld.modeling_geomeld import masked_mse_loss
from modeling_geomeld.training.pretraining import (
    ADAM_BETAS,
    LogitScaleClampCallback,
    decay_parameter_names,
    param_groups,
    scaled_learning_rate,
)


def mmearth_s2_loss(pred: torch.Tensor, imgs: torch.Tensor, mask: torch.Tensor, p: int) -> torch.Tensor:
    """MMEarth-train's S2 loss with norm_pix_loss, as its fcmae.py computes it: patchify to (N, L, p*p*C),
    normalise each patch by the mean and unbiased variance of all its values, MSE per patch, mean over
    the masked patches."""
    n, c, h, w = imgs.shape

    def patchify(x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(n, c, h // p, p, w // p, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(n, (h // p) * (w // p), p * p * c)

    target = patchify(imgs)
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    target = (target - mean) / (var + 1.0e-6) ** 0.5
    loss = ((patchify(pred) - target) ** 2).mean(dim=-1)  # (N, L)
    m = mask.reshape(n, -1).float()
    return (loss * m).sum() / m.sum()


def test_s2_target_is_normalised_per_patch_as_mmearth() -> None:
    torch.manual_seed(0)
    model = GeoMeldForPreTraining(tiny_config(use_jepa=False, use_itc=False)).eval()
    assert model.config.decoder_config.norm_pix_mode == "patch"
    x = inputs(["sentinel2"], batch=5)
    # spectral contrast: bands with very different levels, as in real reflectance
    x["sentinel2"] = x["sentinel2"] * torch.linspace(0.05, 2.0, 12).view(1, -1, 1, 1) + torch.linspace(-1, 3, 12).view(1, -1, 1, 1)
    mask = random_patch_mask(5, (3, 3), 0.6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x, mask=mask)
        ours = out.mpmae_losses["sentinel2"]
        reference = mmearth_s2_loss(out.reconstructions["sentinel2"], x["sentinel2"], mask, 16)
    assert torch.allclose(ours, reference, rtol=1e-5, atol=1e-6)
    # a prediction carrying the spectral contrast: the per-patch target keeps it, the per-channel one does not
    pred, valid = 0.3 * x["sentinel2"], torch.ones(5, IMAGE, IMAGE, dtype=torch.bool)
    patch, _ = masked_mse_loss(pred, x["sentinel2"], valid, mask, 16, "patch")
    per_channel, _ = masked_mse_loss(pred, x["sentinel2"], valid, mask, 16, "patch_channel")
    assert torch.allclose(patch, mmearth_s2_loss(pred, x["sentinel2"], mask, 16), rtol=1e-5)
    assert not torch.allclose(per_channel, patch, rtol=0.1)


def test_patch_normalisation_skips_no_data_pixels() -> None:
    """With no-data, the patch statistics are those of the patch's valid pixels (all their channels)."""
    g = torch.Generator().manual_seed(0)
    target, pred = torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 3, 8, 8, generator=g)
    valid = torch.rand(2, 8, 8, generator=g) > 0.3
    mask = torch.ones(2, 2, 2, dtype=torch.bool)
    loss, count = masked_mse_loss(pred, target, valid, mask, 4, "patch")
    errs = []
    for b in range(2):
        for i in range(2):
            for j in range(2):
                v = valid[b, i * 4 : i * 4 + 4, j * 4 : j * 4 + 4]
                t = target[b, :, i * 4 : i * 4 + 4, j * 4 : j * 4 + 4][:, v]  # (C, n valid)
                q = pred[b, :, i * 4 : i * 4 + 4, j * 4 : j * 4 + 4][:, v]
                t = (t - t.mean()) / (t.var() + 1e-6).sqrt()
                errs.append(((q - t) ** 2).mean(0))
    assert int(count) == int(valid.sum())
    assert torch.allclose(loss, torch.cat(errs).mean(), atol=1e-6)


@pytest.mark.parametrize(("patches", "ratio"), [(9, 0.6), (49, 0.6), (64, 0.6), (196, 0.75), (49, 0.0), (10, 0.5)])
def test_mask_count_is_fcmae_s(patches: int, ratio: float) -> None:
    side = math.isqrt(patches)
    grid = (side, patches // side)
    len_keep = int(grid[0] * grid[1] * (1 - ratio))  # FCMAE gen_random_mask
    mask = random_patch_mask(4, grid, ratio, generator=torch.Generator().manual_seed(0))
    assert mask.sum(dim=(1, 2)).tolist() == [grid[0] * grid[1] - len_keep] * 4


def test_logit_scale_keeps_its_gradient_and_is_clamped_after_the_step() -> None:
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    scale = torch.tensor(5.0, requires_grad=True)  # above ln 100: the old in-loss clamp gave it zero gradient
    (grad,) = torch.autograd.grad(contrastive_loss(img, txt, scale), (scale,))
    assert float(grad.abs()) > 0
    model = GeoMeldForPreTraining(tiny_config(use_mpmae=False, use_jepa=False))
    with torch.no_grad():
        model.geomeld.logit_scale.fill_(5.0)
    LogitScaleClampCallback().on_step_end(None, None, None, model=model)
    assert float(model.geomeld.logit_scale.detach()) == pytest.approx(math.log(100.0))
    with torch.no_grad():
        model.geomeld.logit_scale.fill_(-1.0)
    LogitScaleClampCallback().on_step_end(None, None, None, model=model)
    assert float(model.geomeld.logit_scale.detach()) == 0.0


def test_no_weight_decay_on_temperature_log_variances_embeddings_mask_tokens_biases_norms() -> None:
    model = GeoMeldForPreTraining(tiny_config())
    decay = set(decay_parameter_names(model))
    names = dict(model.named_parameters())
    never = [n for n in names if n == "geomeld.logit_scale" or n.startswith("loss_log_vars.") or "modality_embeddings." in n or n.endswith("mask_token")]
    assert {"geomeld.logit_scale", "decoder.mask_token", "predictor.mask_token"} <= set(never)
    assert any(n.startswith("loss_log_vars.") for n in never) and any("modality_embeddings." in n for n in never)
    assert decay.isdisjoint(never)
    # timm's rule for the rest: 1-D parameters and biases never decay, matrices and kernels do
    for n, p in names.items():
        if n in never or ".grn." in n:
            continue
        assert (n in decay) == (p.ndim >= 2 and not n.endswith(".bias")), n
    groups = param_groups(model, 0.05)
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sum(len(g["params"]) for g in groups) == len(trainable)


def test_learning_rate_scaling_and_betas_follow_fcmae() -> None:
    assert scaled_learning_rate(1.5e-4, 64, accumulation=2, world_size=2) == pytest.approx(1.5e-4 * 256 / 256)
    assert scaled_learning_rate(1.5e-4, 8) == pytest.approx(1.5e-4 * 8 / 256)
    assert ADAM_BETAS == (0.9, 0.95)


def test_trainer_builds_adamw_with_these_groups(tmp_path: Path) -> None:
    from transformers import TrainingArguments

    from modeling_geomeld.training.pretraining import GeoMeldTrainer

    model = GeoMeldForPreTraining(tiny_config())
    args = TrainingArguments(output_dir=str(tmp_path), weight_decay=0.05, adam_beta1=ADAM_BETAS[0], adam_beta2=ADAM_BETAS[1], report_to=[], use_cpu=True)
    trainer = GeoMeldTrainer(model=model, args=args)
    opt = trainer.create_optimizer()
    assert model.decoder is not None
    assert all(g["betas"] == (0.9, 0.95) for g in opt.param_groups)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(model.geomeld.logit_scale) not in decayed and id(model.decoder.mask_token) not in decayed
    assert id(model.decoder.embed.weight) in decayed
