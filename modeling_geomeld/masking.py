"""FCMAE-style random patch masking, with randomness as an input.

A mask is a boolean tensor ``(batch, grid_h, grid_w)`` on the patch grid, ``True`` where a patch is
masked (hidden from the encoder, reconstructed by the decoders). Every sample masks exactly
``L - int(L * (1 - ratio))`` of its ``L = grid_h * grid_w`` patches (FCMAE / MMEarth keep ``int(L * (1 - ratio))``),
chosen by ranking ``noise`` as ViT-MAE does; pass ``noise``
(or a ``torch.Generator``) to make masks reproducible, or sample them in a data collator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_patch_mask(
    batch_size: int,
    grid_size: tuple[int, int],
    mask_ratio: float,
    *,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Sample a patch mask ``(batch_size, grid_h, grid_w)``; ``True`` marks masked patches."""
    grid_h, grid_w = grid_size
    num_patches = grid_h * grid_w
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must lie in [0, 1), got {mask_ratio}")
    if noise is None:
        noise = torch.rand(batch_size, num_patches, generator=generator, device=device)
    elif noise.shape != (batch_size, num_patches):
        raise ValueError(
            f"noise must have shape {(batch_size, num_patches)} (batch, patches), got {tuple(noise.shape)}"
        )
    num_masked = num_patches - int(num_patches * (1 - mask_ratio))  # FCMAE's count: it keeps int(L * (1 - r))
    # the patches with the largest noise are masked; ties broken by argsort's stable order
    ranks = torch.argsort(torch.argsort(noise, dim=1, descending=True), dim=1)
    mask = ranks < num_masked
    return mask.view(batch_size, grid_h, grid_w)


def upsample_mask(mask: torch.Tensor, size: tuple[int, int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Repeat a patch-grid mask ``(B, gh, gw)`` to a finer grid ``size`` -> ``(B, 1, H, W)`` of ``dtype`` (1 = masked).

    ``size`` must be an integer multiple of the patch grid: every fine cell belongs to exactly one patch.
    """
    grid_h, grid_w = mask.shape[-2:]
    if size[0] % grid_h or size[1] % grid_w:
        raise ValueError(
            f"cannot upsample a {grid_h}x{grid_w} patch mask to {size[0]}x{size[1]}: not a multiple"
        )
    return F.interpolate(mask[:, None].to(dtype), size=size, mode="nearest")
