"""MinkowskiEngine tensor layouts of the sparse ConvNeXt V2 (FCMAE, MMEarth) as dense PyTorch tensors.

A `MinkowskiConvolution` stores its kernel as (kernel_volume, C_in, C_out) and a depthwise one as
(kernel_volume, C); both keep biases as (1, C). The kernel offsets run with the first spatial axis (rows)
fastest, so tap `k` sits at row `k % ks`, column `k // ks` (the reference code's `remap_checkpoint_keys`
reshapes to (ks, ks) and swaps the two axes). `MinkowskiGRN` keeps gamma/beta as (1, C); the dense GRN as
(1, 1, 1, C). `MinkowskiLayerNorm` and `MinkowskiLinear` wrap plain modules as `.ln` and `.linear`.
"""

from __future__ import annotations

import math

import torch

from .common import ConversionError


def _side(volume: int, key: str) -> int:
    ks = math.isqrt(volume)
    if ks * ks != volume:
        raise ConversionError(f"{key}: kernel volume {volume} is not a square kernel")
    return ks


def conv_kernel(kernel: torch.Tensor, key: str) -> torch.Tensor:
    """(ks*ks, C_in, C_out) -> (C_out, C_in, ks, ks)."""
    if kernel.ndim != 3:
        raise ConversionError(f"{key}: expected a Minkowski kernel (volume, C_in, C_out), got {tuple(kernel.shape)}")
    volume, c_in, c_out = kernel.shape
    ks = _side(volume, key)
    # [col * ks + row, i, o] -> [o, i, row, col]
    return kernel.reshape(ks, ks, c_in, c_out).permute(3, 2, 1, 0).contiguous()


def depthwise_kernel(kernel: torch.Tensor, key: str) -> torch.Tensor:
    """(ks*ks, C) -> (C, 1, ks, ks)."""
    if kernel.ndim != 2:
        raise ConversionError(f"{key}: expected a depthwise Minkowski kernel (volume, C), got {tuple(kernel.shape)}")
    volume, channels = kernel.shape
    ks = _side(volume, key)
    return kernel.reshape(ks, ks, channels).permute(2, 1, 0).unsqueeze(1).contiguous()


def flat(bias: torch.Tensor) -> torch.Tensor:
    """(1, C) bias or GRN affine -> (C,)."""
    return bias.reshape(-1)
