"""Re-creations of the reference code the converters are tested against (read from the fetched repositories).

* `DenseConvNeXtV2`: facebookresearch/ConvNeXt-V2 models/convnextv2.py (pure PyTorch: its `LayerNorm` with a
  hand-written channels-first branch, `GRN` with `torch.norm`, 4 stages, final norm on the global mean).
* `remap_checkpoint_keys`: the same repository's utils.py, which turns an FCMAE (MinkowskiEngine) checkpoint
  into the dense model's keys when fine-tuning starts.
* `sparse_fcmae_layout` / `mmearth_layout`: the key names and shapes those repositories' sparse models
  produce (`SparseConvNeXtV2`, `FCMAE`; MMEarth's modified stem, per-modality decoders and uncertainty loss).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class RefLayerNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6, data_format: str = "channels_last"):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps, self.data_format, self.normalized_shape = eps, data_format, (dim,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.data_format == "channels_last":
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class RefGRN(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + self.eps)
        return self.gamma * (x * nx) + self.beta + x


class RefBlock(nn.Module):
    def __init__(self, dim: int, grn_eps: float = 1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = RefLayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = RefGRN(4 * dim, grn_eps)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.grn(self.act(self.pwconv1(self.norm(y))))).permute(0, 3, 1, 2)
        return x + y


class DenseConvNeXtV2(nn.Module):
    """facebookresearch/ConvNeXt-V2 `ConvNeXtV2` (drop path 0); `forward` returns every stage's output."""

    def __init__(self, in_chans: int, depths: list[int], dims: list[int], num_classes: int = 5):
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(in_chans, dims[0], 4, 4), RefLayerNorm(dims[0], 1e-6, "channels_first"))]
        )
        for i in range(3):
            self.downsample_layers.append(
                nn.Sequential(RefLayerNorm(dims[i], 1e-6, "channels_first"), nn.Conv2d(dims[i], dims[i + 1], 2, 2))
            )
        self.stages = nn.ModuleList(nn.Sequential(*[RefBlock(dims[i]) for _ in range(depths[i])]) for i in range(4))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        feats = []
        for i in range(4):
            x = self.stages[i](self.downsample_layers[i](x))
            feats.append(x)
        return feats, self.norm(x.mean([-2, -1]))


def remap_checkpoint_keys(ckpt: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """ConvNeXt-V2 utils.py `remap_checkpoint_keys`, statement for statement."""
    new_ckpt: OrderedDict[str, torch.Tensor] = OrderedDict()
    for k, v in ckpt.items():
        if k.startswith("encoder"):
            k = ".".join(k.split(".")[1:])
        if k.endswith("kernel"):
            k = ".".join(k.split(".")[:-1])
            new_k = k + ".weight"
            if len(v.shape) == 3:
                kv, in_dim, out_dim = v.shape
                ks = int(math.sqrt(kv))
                new_ckpt[new_k] = v.permute(2, 1, 0).reshape(out_dim, in_dim, ks, ks).transpose(3, 2)
            elif len(v.shape) == 2:
                kv, dim = v.shape
                ks = int(math.sqrt(kv))
                new_ckpt[new_k] = v.permute(1, 0).reshape(dim, 1, ks, ks).transpose(3, 2)
            continue
        elif "ln" in k or "linear" in k:
            parts = k.split(".")
            parts.pop(-2)
            new_k = ".".join(parts)
        else:
            new_k = k
        new_ckpt[new_k] = v
    for k, v in new_ckpt.items():
        if k.endswith("bias") and len(v.shape) != 1:
            new_ckpt[k] = v.reshape(-1)
        elif "grn" in k:
            new_ckpt[k] = v.unsqueeze(0).unsqueeze(1)
    return new_ckpt


def _sparse_block(prefix: str, dim: int) -> dict[str, tuple[int, ...]]:
    # Block of convnextv2_sparse.py: MinkowskiDepthwiseConvolution(k=7), MinkowskiLayerNorm (.ln),
    # MinkowskiLinear (.linear), MinkowskiGRN (gamma/beta (1, C))
    return {
        f"{prefix}.dwconv.kernel": (49, dim),
        f"{prefix}.dwconv.bias": (1, dim),
        f"{prefix}.norm.ln.weight": (dim,),
        f"{prefix}.norm.ln.bias": (dim,),
        f"{prefix}.pwconv1.linear.weight": (4 * dim, dim),
        f"{prefix}.pwconv1.linear.bias": (4 * dim,),
        f"{prefix}.pwconv2.linear.weight": (dim, 4 * dim),
        f"{prefix}.pwconv2.linear.bias": (dim,),
        f"{prefix}.grn.gamma": (1, 4 * dim),
        f"{prefix}.grn.beta": (1, 4 * dim),
    }


def _dense_block(prefix: str, dim: int) -> dict[str, tuple[int, ...]]:
    # the dense Block of convnextv2.py (FCMAE's decoder blocks)
    return {
        f"{prefix}.dwconv.weight": (dim, 1, 7, 7),
        f"{prefix}.dwconv.bias": (dim,),
        f"{prefix}.norm.weight": (dim,),
        f"{prefix}.norm.bias": (dim,),
        f"{prefix}.pwconv1.weight": (4 * dim, dim),
        f"{prefix}.pwconv1.bias": (4 * dim,),
        f"{prefix}.grn.gamma": (1, 1, 1, 4 * dim),
        f"{prefix}.grn.beta": (1, 1, 1, 4 * dim),
        f"{prefix}.pwconv2.weight": (dim, 4 * dim),
        f"{prefix}.pwconv2.bias": (dim,),
    }


def sparse_fcmae_layout(
    depths: list[int], dims: list[int], in_chans: int = 3, decoder_dim: int = 16, patch: int = 32
) -> dict[str, tuple[int, ...]]:
    """Key -> shape of `FCMAE(...).state_dict()` (ConvNeXt-V2 models/fcmae.py, SparseConvNeXtV2 with D=2)."""
    shapes: dict[str, tuple[int, ...]] = {
        "encoder.downsample_layers.0.0.weight": (dims[0], in_chans, 4, 4),
        "encoder.downsample_layers.0.0.bias": (dims[0],),
        "encoder.downsample_layers.0.1.weight": (dims[0],),
        "encoder.downsample_layers.0.1.bias": (dims[0],),
    }
    for i in range(3):
        p = f"encoder.downsample_layers.{i + 1}"
        shapes |= {
            f"{p}.0.ln.weight": (dims[i],),
            f"{p}.0.ln.bias": (dims[i],),
            f"{p}.1.kernel": (4, dims[i], dims[i + 1]),
            f"{p}.1.bias": (1, dims[i + 1]),
        }
    for i in range(4):
        for j in range(depths[i]):
            shapes |= _sparse_block(f"encoder.stages.{i}.{j}", dims[i])
    shapes |= {
        "proj.weight": (decoder_dim, dims[-1], 1, 1),
        "proj.bias": (decoder_dim,),
        "mask_token": (1, decoder_dim, 1, 1),
        **_dense_block("decoder.0", decoder_dim),
        "pred.weight": (patch**2 * in_chans, decoder_dim, 1, 1),
        "pred.bias": (patch**2 * in_chans,),
    }
    return shapes


def random_state(shapes: dict[str, tuple[int, ...]], seed: int, scale: float = 0.2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) * scale for k, s in shapes.items()}


def mmearth_layout(
    depths: list[int],
    dims: list[int],
    in_chans: int,
    patch: int,
    decoder_dim: int,
    out_chans: dict[str, int],
    image_level: dict[str, int],
    orig_stem: bool = False,
) -> dict[str, tuple[int, ...]]:
    """Key -> shape of MMEarth-train's `FCMAE(...).state_dict()` (models/fcmae.py, sparse=True, D=2, its
    SparseConvNeXtV2 with `use_orig_stem`), with `UncertaintyWeightingStrategy` as `loss_fn`."""
    s = patch // 2 ** (len(depths) - 1)
    if orig_stem:
        shapes: dict[str, tuple[int, ...]] = {
            "encoder.stem_orig.0.kernel": (s * s, in_chans, dims[0]),
            "encoder.stem_orig.0.bias": (1, dims[0]),
            "encoder.stem_orig.1.ln.weight": (dims[0],),
            "encoder.stem_orig.1.ln.bias": (dims[0],),
        }
    else:
        shapes = {
            "encoder.initial_conv.0.kernel": (9, in_chans, dims[0]),
            "encoder.initial_conv.0.bias": (1, dims[0]),
            "encoder.initial_conv.1.ln.weight": (dims[0],),
            "encoder.initial_conv.1.ln.bias": (dims[0],),
            "encoder.stem.0.kernel": (s * s, dims[0]),
            "encoder.stem.0.bias": (1, dims[0]),
            "encoder.stem.1.ln.weight": (dims[0],),
            "encoder.stem.1.ln.bias": (dims[0],),
        }
    for i in range(3):
        p = f"encoder.downsample_layers.{i}"
        shapes |= {
            f"{p}.0.ln.weight": (dims[i],),
            f"{p}.0.ln.bias": (dims[i],),
            f"{p}.1.kernel": (4, dims[i], dims[i + 1]),
            f"{p}.1.bias": (1, dims[i + 1]),
        }
    for i in range(4):
        for j in range(depths[i]):
            shapes |= _sparse_block(f"encoder.stages.{i}.{j}", dims[i])
    shapes |= {
        "proj.weight": (decoder_dim, dims[-1], 1, 1),
        "proj.bias": (decoder_dim,),
        "mask_token": (1, decoder_dim, 1, 1),
    }
    for m, c in out_chans.items():
        shapes |= _dense_block(f"decoder_dict.{m}.0", decoder_dim)
        shapes |= {f"pred_dict.{m}.weight": (patch**2 * c, decoder_dim, 1, 1), f"pred_dict.{m}.bias": (patch**2 * c,)}
    for m, c in image_level.items():
        shapes |= _dense_block(f"decoder_dict.{m}.0", decoder_dim)
        shapes |= {f"pred_dict.{m}.weight": (c, decoder_dim), f"pred_dict.{m}.bias": (c,)}
    if image_level:
        shapes |= {"layer_norm_tmp.weight": (decoder_dim,), "layer_norm_tmp.bias": (decoder_dim,)}
    shapes["loss_fn.log_vars"] = (len(out_chans) + len(image_level),)
    return shapes


def shared_decoder(sd: dict[str, torch.Tensor], modalities: list[str]) -> dict[str, torch.Tensor]:
    """MMEarth builds one list of decoder blocks and wraps it per modality: every copy holds the same tensors."""
    first = modalities[0]
    for k in list(sd):
        if k.startswith(f"decoder_dict.{first}."):
            rest = k[len(f"decoder_dict.{first}.") :]
            for m in modalities[1:]:
                sd[f"decoder_dict.{m}.{rest}"] = sd[k].clone()
    return sd


class MMEarthReference(nn.Module):
    """MMEarth-train's sparse FCMAE as it computes on a fully visible input, in dense PyTorch: the submanifold
    3x3 conv keeps the grid (zero outside the image: padding 1) and the stride-s convs read exactly their
    cell (no padding). (MMEarth's own dense `ConvNeXtV2` pads differently: 3x3 without padding, stem with
    s // 2; the checkpoint was trained by the sparse model, which is what this follows.) Loaded through the
    reference `remap_checkpoint_keys`. The decoder is `FCMAE.forward_decoder` for pixel-level modalities,
    its blocks MMEarth's dense `Block` (GRN eps 1e-4 by default)."""

    def __init__(
        self,
        in_chans: int,
        depths: list[int],
        dims: list[int],
        patch: int,
        decoder_dim: int,
        out_chans: dict[str, int],
        orig_stem: bool = False,
        decoder_grn_eps: float = 1e-4,
    ):
        super().__init__()
        s = patch // 2 ** (len(depths) - 1)
        self.orig_stem = orig_stem
        if orig_stem:
            self.stem_orig = nn.Sequential(nn.Conv2d(in_chans, dims[0], s, s), RefLayerNorm(dims[0], 1e-6, "channels_first"))
        else:
            self.initial_conv = nn.Sequential(
                nn.Conv2d(in_chans, dims[0], 3, padding=1), RefLayerNorm(dims[0], 1e-6, "channels_first"), nn.GELU()
            )
            self.stem = nn.Sequential(
                nn.Conv2d(dims[0], dims[0], s, s, groups=dims[0]), RefLayerNorm(dims[0], 1e-6, "channels_first")
            )
        self.downsample_layers = nn.ModuleList(
            nn.Sequential(RefLayerNorm(dims[i], 1e-6, "channels_first"), nn.Conv2d(dims[i], dims[i + 1], 2, 2))
            for i in range(3)
        )
        self.stages = nn.ModuleList(nn.Sequential(*[RefBlock(dims[i]) for _ in range(depths[i])]) for i in range(4))
        self.proj = nn.Conv2d(dims[-1], decoder_dim, 1)
        self.mask_token = nn.Parameter(torch.zeros(1, decoder_dim, 1, 1))
        blocks = [RefBlock(decoder_dim, grn_eps=decoder_grn_eps)]
        self.decoder_dict = nn.ModuleDict({m: nn.Sequential(*blocks) for m in out_chans})
        self.pred_dict = nn.ModuleDict({m: nn.Conv2d(decoder_dim, patch**2 * c, 1) for m, c in out_chans.items()})

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem_orig(x) if self.orig_stem else self.stem(self.initial_conv(x))
        x = self.stages[0](x)
        feats = [x]
        for i in range(3):
            x = self.stages[i + 1](self.downsample_layers[i](x))
            feats.append(x)
        return feats

    def decode(self, latent: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        # mask: (N, L) 1 = masked, as FCMAE.gen_random_mask
        x = self.proj(latent)
        n, _, h, w = x.shape
        m = mask.reshape(-1, h, w).unsqueeze(1).type_as(x)
        x = x * (1.0 - m) + self.mask_token.repeat(n, 1, h, w) * m
        return {name: self.pred_dict[name](self.decoder_dict[name](x)) for name in self.pred_dict}
