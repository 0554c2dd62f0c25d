"""The masked dense encoder against an independent sparse reference (FCMAE, Woo et al. 2023, sec. 3.1).

FCMAE encodes only the visible sites with sparse convolutions (MinkowskiEngine). The reference below is
written from that definition, on coordinate lists rather than dense maps, and shares no code with the model
(only its parameters are read):

* a sparse tensor is a set of active sites (b, y, x) with one feature vector each;
* a stride-1 convolution is *submanifold*: it produces features at the input's active sites only, summing
  over the active neighbours of each;
* a strided convolution (kernel = stride) produces features at the parents of active sites, summing over
  each parent's active children;
* LayerNorm, Linear and GELU act on every site on its own; GRN normalises by the L2 norm over the active
  sites of each sample (the per-sample GRN that GeoMeld documents; the official sparse GRN pools the batch).

Every parameter is randomised (the zero GRN / unit LayerNorm init would hide leaks), and the comparison runs
in float64 with patch masks and with per-pixel no-data that does not align with any stride.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from _tiny import tiny_config

from modeling_geomeld.masking import random_patch_mask
from modeling_geomeld.modalities import SENTINEL2_BANDS
from modeling_geomeld.modeling_geomeld import GeoMeldEncoder

B, SIZE, PATCH = 3, 48, 16


@dataclass
class Sparse:
    coords: torch.Tensor  # (N, 3) long: sample, row, column
    feats: torch.Tensor  # (N, C)
    shape: tuple[int, int, int]  # batch, rows, columns of the grid the coordinates live on


def _index(sp: Sparse) -> torch.Tensor:
    idx = torch.full(sp.shape, -1, dtype=torch.long)
    idx[sp.coords[:, 0], sp.coords[:, 1], sp.coords[:, 2]] = torch.arange(len(sp.coords))
    return idx


def _tap(weight: torch.Tensor, i: int, j: int, feats: torch.Tensor, depthwise: bool) -> torch.Tensor:
    w = weight[:, :, i, j]  # (C_out, C_in / groups)
    return feats * w[:, 0] if depthwise else feats @ w.T


def submanifold_conv(sp: Sparse, weight: torch.Tensor, bias: torch.Tensor, depthwise: bool) -> Sparse:
    """Stride-1 conv (cross-correlation, 'same' size) evaluated at the active sites only."""
    k = weight.shape[-1]
    r = k // 2
    idx = _index(sp)
    b, y, x = sp.coords.unbind(1)
    out = bias.expand(len(sp.coords), -1).clone()
    for i in range(k):
        for j in range(k):
            yy, xx = y + i - r, x + j - r
            inside = (yy >= 0) & (yy < sp.shape[1]) & (xx >= 0) & (xx < sp.shape[2])
            nb = torch.where(inside, idx[b, yy.clamp(0, sp.shape[1] - 1), xx.clamp(0, sp.shape[2] - 1)], -1)
            f = torch.where((nb >= 0)[:, None], sp.feats[nb.clamp_min(0)], 0.0)
            out = out + _tap(weight, i, j, f, depthwise)
    return Sparse(sp.coords, out, sp.shape)


def strided_conv(sp: Sparse, weight: torch.Tensor, bias: torch.Tensor, depthwise: bool) -> Sparse:
    """Kernel = stride conv: features at the parents of the active sites, from their active children."""
    s = weight.shape[-1]
    b, y, x = sp.coords.unbind(1)
    parents = torch.unique(torch.stack([b, y // s, x // s], 1), dim=0)
    shape = (sp.shape[0], sp.shape[1] // s, sp.shape[2] // s)
    idx = _index(sp)
    pb, py, px = parents.unbind(1)
    out = bias.expand(len(parents), -1).clone()
    for i in range(s):
        for j in range(s):
            child = idx[pb, py * s + i, px * s + j]
            f = torch.where((child >= 0)[:, None], sp.feats[child.clamp_min(0)], 0.0)
            out = out + _tap(weight, i, j, f, depthwise)
    return Sparse(parents, out, shape)


def pointwise(sp: Sparse, fn: Callable[[torch.Tensor], torch.Tensor]) -> Sparse:
    return Sparse(sp.coords, fn(sp.feats), sp.shape)


def layer_norm(sp: Sparse, norm: Any) -> Sparse:
    return pointwise(sp, lambda f: F.layer_norm(f, norm.normalized_shape, norm.weight, norm.bias, norm.eps))


def grn(sp: Sparse, gamma: torch.Tensor, beta: torch.Tensor) -> Sparse:
    out = torch.empty_like(sp.feats)
    for sample in range(sp.shape[0]):
        rows = sp.coords[:, 0] == sample
        f = sp.feats[rows]
        g = f.pow(2).sum(0).sqrt()  # L2 norm over this sample's active sites, per channel
        n = g / (g.mean() + 1e-6)
        out[rows] = gamma.reshape(-1) * (f * n) + beta.reshape(-1) + f
    return Sparse(sp.coords, out, sp.shape)


def block(sp: Sparse, blk: Any) -> Sparse:
    y = submanifold_conv(sp, blk.dwconv.weight, blk.dwconv.bias, depthwise=True)
    y = layer_norm(y, blk.norm)
    y = pointwise(y, lambda f: F.gelu(blk.pwconv1(f)))
    y = grn(y, blk.grn.gamma, blk.grn.beta)
    y = pointwise(y, blk.pwconv2)
    return Sparse(sp.coords, sp.feats + y.feats, sp.shape)


def stem(sp: Sparse, module: Any, stem_type: str) -> Sparse:
    if stem_type == "convnext":
        x = strided_conv(sp, module.conv.weight, module.conv.bias, depthwise=False)
    else:  # MMEarth: submanifold 3x3 conv + LN + GELU, depthwise strided conv
        x = submanifold_conv(sp, module.initial_conv.weight, module.initial_conv.bias, depthwise=False)
        x = pointwise(layer_norm(x, module.initial_norm), F.gelu)
        x = strided_conv(x, module.conv.weight, module.conv.bias, depthwise=True)
    return layer_norm(x, module.norm)


def reference_encoder(enc: Any, pixels: torch.Tensor, active: torch.Tensor, stem_type: str) -> list[Sparse]:
    """Sparse encoding of one modality (`sentinel2`); `active` (B, H, W) bool: valid and not masked."""
    coords = active.nonzero()
    b, h, w = active.shape
    sp = Sparse(coords, pixels.permute(0, 2, 3, 1)[active], (b, h, w))
    x = stem(sp, enc.stems["sentinel2"], stem_type)
    x = pointwise(x, lambda f: f + enc.modality_embeddings["sentinel2"])
    out = []
    for i, blocks in enumerate(enc.stages):
        if i:
            down = enc.downsamples[i]
            x = layer_norm(x, down.norm)
            x = strided_conv(x, down.conv.weight, down.conv.bias, depthwise=False)
        for blk in blocks:
            x = block(x, blk)
        out.append(x)
    return out


def _no_data(seed: int) -> torch.Tensor:
    """Swath edge, clouds and a stripe, at odd offsets so nothing aligns with the stem, stage or patch grid."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    valid = torch.ones(B, SIZE, SIZE, dtype=torch.bool)
    valid[0] &= yy + 2 * xx > 37  # diagonal swath edge
    for b in range(B):
        for _ in range(3):
            y0, x0 = (int(v) for v in torch.randint(0, SIZE - 9, (2,), generator=g))
            h, w = (int(v) for v in torch.randint(3, 9, (2,), generator=g))
            valid[b, y0 : y0 + h, x0 : x0 + w] = False  # cloud
    valid[2, :, 21] = False  # a dead detector column
    return valid


@pytest.mark.parametrize("stem_type", ["convnext", "mmearth"])
@pytest.mark.parametrize("scenario", ["patch_mask", "no_data", "patch_mask+no_data"])
def test_visible_features_equal_a_sparse_reference(stem_type: str, scenario: str) -> None:
    torch.manual_seed(0)
    cfg = tiny_config(encoder_config={"input_modalities": {"sentinel2": list(SENTINEL2_BANDS)}, "stem_type": stem_type})
    enc = GeoMeldEncoder(cfg.encoder_cfg).double().eval()
    with torch.no_grad():
        for p in enc.parameters():
            p.copy_(torch.randn_like(p) * 0.4)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, 12, SIZE, SIZE, generator=g, dtype=torch.float64)
    grid = SIZE // PATCH
    mask = random_patch_mask(B, (grid, grid), 0.6, generator=g) if "patch_mask" in scenario else None
    valid = _no_data(2) if "no_data" in scenario else torch.ones(B, SIZE, SIZE, dtype=torch.bool)

    with torch.no_grad():
        dense = enc({"sentinel2": x}, valid_mask={"sentinel2": valid} if "no_data" in scenario else None, mask=mask)
        active = valid.clone()
        if mask is not None:
            active &= ~mask.repeat_interleave(PATCH, 1).repeat_interleave(PATCH, 2)
        ref = reference_encoder(enc, x, active, stem_type)

    for stage, (d, r) in enumerate(zip(dense.hidden_states, ref, strict=True)):
        assert tuple(d.shape[-2:]) == r.shape[1:], stage
        b, y, xx = r.coords.unbind(1)
        got = d.permute(0, 2, 3, 1)[b, y, xx]
        assert torch.allclose(got, r.feats, atol=1e-5, rtol=0), (stage, float((got - r.feats).abs().max()))
        inactive = torch.ones(d.shape[0], *d.shape[-2:], dtype=torch.bool)
        inactive[b, y, xx] = False
        assert torch.all(d.permute(0, 2, 3, 1)[inactive] == 0), stage  # invisible sites carry exactly zero
    last = ref[-1]
    visible = torch.zeros(B, *last.shape[1:], dtype=torch.bool)
    visible[last.coords.unbind(1)] = True
    assert torch.equal(dense.visible[:, 0] > 0, visible)
