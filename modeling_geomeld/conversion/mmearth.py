"""MMEarth-train pretraining checkpoints (vishalned/MMEarth-train, `FCMAE` with a sparse ConvNeXt V2) ->
`GeoMeldForPreTraining` (encoder, MP-MAE decoders, uncertainty weights), to continue pretraining or fine-tune.

The layout (MinkowskiEngine tensors, see `minkowski.py`):
* stem: `--use_orig_stem False` (the paper's) has `encoder.initial_conv` (3x3 conv, LN, GELU) and
  `encoder.stem` (depthwise k = s conv, LN) -> GeoMeld `stem_type="mmearth"`; `--use_orig_stem True` has
  `encoder.stem_orig` (k = s conv, LN) -> `stem_type="convnext"`. `encoder.downsample_layers.{0,1,2}` sit
  between stages 0-1, 1-2, 2-3 (GeoMeld's `downsamples.{1,2,3}`).
* decoder: `proj` (our `decoder.embed`), `mask_token`, `decoder_dict.<modality>` (one list of blocks shared by
  every modality, so every copy must be equal: our `shared_blocks`), `pred_dict.<modality>` 1x1 heads whose
  output channels are ordered (pixel, channel) where ours are (channel, pixel) for `pixel_shuffle`: a
  permutation. Band order is MMEarth's (B8A before B8); we reorder by name.
* `loss_fn.log_vars`: one uncertainty log-variance per output modality, in `args.out_modalities` order.

Known difference: MMEarth's dense decoder `Block` uses GRN eps 1e-4, GeoMeld's 1e-6 (the ConvNeXt V2 value),
so reconstructions agree to about 1e-4, not bit for bit; the encoder (sparse GRN eps 1e-6) is exact. The sparse
GRN of MMEarth pools its statistic over the whole batch; GeoMeld's is per sample (identical at batch 1).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..configuration_geomeld import GeoMeldConfig
from ..modeling_geomeld import GeoMeldForPreTraining
from . import minkowski as mk
from .common import (
    ConversionError,
    ConversionReport,
    SourceWeights,
    block_shapes,
    count_blocks,
    encoder_geometry,
    load_into,
)
from .fcmae import _Layout

#: MMEarth modality -> GeoMeld modality (pixel-level ones; the image-level heads have no counterpart)
MODALITY_NAMES: dict[str, str] = {
    "sentinel2": "sentinel2",
    "sentinel1": "sentinel1",
    "aster": "dem",
    "canopy_height_eth": "canopy_height",
    "dynamic_world": "dynamic_world",
    "esa_worldcover": "esa_worldcover",
}
#: MMEarth's full band lists (MODALITIES.py `MODALITIES_FULL`), for "all"
MMEARTH_BANDS_FULL: dict[str, list[str]] = {
    "sentinel2": ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8A", "B8", "B9", "B10", "B11", "B12"],
    "sentinel1": ["asc_VV", "asc_VH", "asc_HH", "asc_HV", "desc_VV", "desc_VH", "desc_HH", "desc_HV"],
    "aster": ["elevation", "slope"],
    "canopy_height_eth": ["height", "std"],
    "dynamic_world": ["landcover"],
    "esa_worldcover": ["map"],
}
#: MMEarth's default INP_MODALITIES["sentinel2"] (12 bands, no B10, B8A before B8)
MMEARTH_S2_DEFAULT = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8A", "B8", "B9", "B11", "B12"]
#: MMEarth's default OUT_MODALITIES (MODALITIES.py)
MMEARTH_OUT_DEFAULT: dict[str, Any] = {
    "sentinel2": MMEARTH_S2_DEFAULT,
    "sentinel1": "all",
    "aster": "all",
    "era5": "all",
    "dynamic_world": "all",
    "canopy_height_eth": "all",
    "lat": "all",
    "lon": "all",
    "biome": "all",
    "eco_region": "all",
    "month": "all",
    "esa_worldcover": "all",
}
_CATEGORICAL_BANDS = {"dynamic_world": "label", "esa_worldcover": "class"}


def geomeld_band(modality: str, band: str) -> str:
    """An MMEarth band name as GeoMeld's: `B8` -> `B08`, `asc_VV` -> `VV_asc`, `desc_VH` -> `VH_des`."""
    if modality == "sentinel2":
        return band if band == "B8A" or len(band) == 3 else f"B0{band[1:]}"
    if modality == "sentinel1":
        orbit, pol = band.split("_")
        return f"{pol}_{orbit[:3]}"
    return band


def _bands(modality: str, selection: Any) -> list[str]:
    return list(MMEARTH_BANDS_FULL[modality]) if selection == "all" else list(selection)


def _args_of(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    args = checkpoint.get("args")
    if isinstance(args, argparse.Namespace):
        return vars(args)
    return dict(args) if isinstance(args, Mapping) else {}


def convert_mmearth(
    checkpoint: str | Path | Mapping[str, Any],
    *,
    input_bands: list[str] | None = None,
    out_modalities: Mapping[str, Any] | None = None,
    image_size: int | None = None,
    config_overrides: dict[str, Any] | None = None,
    patch_size: int | None = None,
) -> tuple[GeoMeldForPreTraining, ConversionReport]:
    """A `GeoMeldForPreTraining` from an MMEarth-train checkpoint (file, or the loaded `{"model": ..., "args":
    ...}` dict). Band lists come from the checkpoint's `args` (`modalities`, `out_modalities`); `input_bands`
    and `out_modalities` override them, else MMEarth's defaults apply (and the report says so)."""
    raw = _read(Path(checkpoint)) if isinstance(checkpoint, (str, Path)) else dict(checkpoint)
    sd = raw.get("model", raw)
    if not isinstance(sd, Mapping):
        raise ConversionError("MMEarth checkpoint: expected {'model': state_dict, 'args': ...}")
    args = _args_of(raw)
    report = ConversionReport("mmearth", str(checkpoint)[:200] if isinstance(checkpoint, (str, Path)) else "<state dict>", "GeoMeldForPreTraining")
    src = SourceWeights(sd, "MMEarth", "encoder.")
    layout = _Layout(src, sparse=True)

    mm_in = input_bands or _bands("sentinel2", (args.get("modalities") or {}).get("sentinel2", MMEARTH_S2_DEFAULT))
    mm_out = dict(out_modalities or args.get("out_modalities") or MMEARTH_OUT_DEFAULT)
    if not args and (input_bands is None or out_modalities is None):
        report.notes.append("the checkpoint carries no args: MMEarth's default input/output band lists were assumed")
    keys = src.keys()
    depths = count_blocks(keys, r"stages\.(\d+)\.(\d+)\.")
    dims = [int(sd[f"encoder.stages.{i}.0.dwconv.kernel"].shape[1]) for i in range(len(depths))]
    orig_stem = "stem_orig.0.kernel" in src
    stem_key = "stem_orig.0.kernel" if orig_stem else "stem.0.kernel"
    if stem_key not in src:
        raise ConversionError("MMEarth checkpoint lacks 'encoder.stem.0.kernel' and 'encoder.stem_orig.0.kernel'")
    stride = mk._side(int(sd["encoder." + stem_key].shape[0]), stem_key)
    patch = stride * 2 ** (len(depths) - 1)
    if patch_size not in (None, patch):
        raise ConversionError(f"an MMEarth checkpoint fixes its patch size ({patch}); got patch_size={patch_size}")
    in_names = [geomeld_band("sentinel2", b) for b in mm_in]
    ours_in = sorted(in_names, key=_canonical_s2)
    order = [in_names.index(b) for b in ours_in]  # our input channel i reads MMEarth channel order[i]

    targets: dict[str, list[str]] = {}
    for mm_name, selection in mm_out.items():
        if mm_name not in MODALITY_NAMES:
            continue
        ours = MODALITY_NAMES[mm_name]
        if ours in _CATEGORICAL_BANDS:
            targets[ours] = [_CATEGORICAL_BANDS[ours]]
        else:
            targets[ours] = [geomeld_band(mm_name, b) for b in _bands(mm_name, selection)]
    skipped = [m for m in mm_out if m not in MODALITY_NAMES]
    decoder_dim = int(sd["proj.weight"].shape[0]) if "proj.weight" in sd else 512
    mm_first = next((m for m in mm_out if m in MODALITY_NAMES), None)
    decoder_depth = len({k.split(".")[2] for k in sd if mm_first and k.startswith(f"decoder_dict.{mm_first}.")})
    has_log_vars = "loss_fn.log_vars" in sd
    config = GeoMeldConfig(
        encoder_config={
            **encoder_geometry(depths, dims),
            "input_modalities": {"sentinel2": ours_in},
            "patch_size": patch,
            "image_size": image_size or int(args.get("input_size") or 112),
            "stem_type": "convnext" if orig_stem else "mmearth",
            "layer_norm_eps": 1e-6,
        },
        decoder_config={
            "target_modalities": targets,
            "hidden_size": decoder_dim,
            "depth": decoder_depth,
            "share_blocks": True,
            "loss_aggregation": "uncertainty" if has_log_vars else "sum",
            "norm_pix_loss_modalities": ["sentinel2"] if args.get("norm_pix_loss", True) and "sentinel2" in targets else [],
        },
        use_jepa=False,
        use_itc=False,
        **(config_overrides or {}),
    )
    report.notes.append(
        f"MMEarth has no JEPA and no ITC: use_jepa/use_itc are off; stem_type={config.encoder_cfg.stem_type!r}; "
        f"input bands reordered by name from MMEarth's {mm_in}"
    )
    if skipped:
        report.notes.append(f"image-level MMEarth heads without a GeoMeld counterpart are discarded: {skipped}")

    enc = "geomeld.encoder."
    out: dict[str, torch.Tensor] = {}
    s = "stems.sentinel2"
    if orig_stem:
        w, b = layout.conv("stem_orig.0", len(mm_in), dims[0], stride)
        out[f"{enc}{s}.conv.weight"], out[f"{enc}{s}.conv.bias"] = w[:, order], b
        out[f"{enc}{s}.norm.weight"], out[f"{enc}{s}.norm.bias"] = layout.norm("stem_orig.1", dims[0])
    else:
        w, b = layout.conv("initial_conv.0", len(mm_in), dims[0], 3)
        out[f"{enc}{s}.initial_conv.weight"], out[f"{enc}{s}.initial_conv.bias"] = w[:, order], b
        out[f"{enc}{s}.initial_norm.weight"], out[f"{enc}{s}.initial_norm.bias"] = layout.norm("initial_conv.1", dims[0])
        dw = mk.depthwise_kernel(src.take("stem.0.kernel", (stride * stride, dims[0])), "stem.0")
        out[f"{enc}{s}.conv.weight"], out[f"{enc}{s}.conv.bias"] = dw, mk.flat(src.take("stem.0.bias", (1, dims[0])))
        out[f"{enc}{s}.norm.weight"], out[f"{enc}{s}.norm.bias"] = layout.norm("stem.1", dims[0])
    out[f"{enc}modality_embeddings.sentinel2"] = torch.zeros(dims[0])  # MMEarth has one input modality
    out |= layout.stages(depths, dims, enc, first_downsample=0)
    # the sparse encoder has no final norm: the pooled-output LayerNorm is identity
    out[f"{enc}norm.weight"], out[f"{enc}norm.bias"] = torch.ones(dims[-1]), torch.zeros(dims[-1])
    report.notes.append("MMEarth's encoder has no final norm: the pooled-output LayerNorm is identity")

    dec = SourceWeights(sd, "MMEarth decoder")
    dec._taken = src._taken  # one ledger for the whole checkpoint
    if targets:
        out["decoder.embed.weight"] = dec.take("proj.weight", (decoder_dim, dims[-1], 1, 1))
        out["decoder.embed.bias"] = dec.take("proj.bias", (decoder_dim,))
        out["decoder.mask_token"] = dec.take("mask_token", (1, decoder_dim, 1, 1))
        mm_pixel = [m for m in mm_out if m in MODALITY_NAMES]
        for k in range(decoder_depth):
            for name, shape in block_shapes(decoder_dim).items():
                copies = [dec.take(f"decoder_dict.{m}.{k}.{name}", shape) for m in mm_pixel]
                if any(not torch.equal(copies[0], c) for c in copies[1:]):
                    raise ConversionError(
                        f"MMEarth decoder block {k} {name} differs between modalities {mm_pixel}; "
                        "GeoMeld shares one set of decoder blocks"
                    )
                out[f"decoder.shared_blocks.{k}.{name}"] = copies[0]
        p2 = patch * patch
        for m in mm_pixel:
            ours = MODALITY_NAMES[m]
            channels = config.decoder_cfg.target_modalities[ours]  # type: ignore[index]
            n_out = _head_channels(ours, channels)
            w = dec.take(f"pred_dict.{m}.weight", (p2 * n_out, decoder_dim, 1, 1))
            b = dec.take(f"pred_dict.{m}.bias", (p2 * n_out,))
            # MMEarth channel (pixel * C + c); ours (c * p^2 + pixel); continuous bands also by name
            if ours in _CATEGORICAL_BANDS:
                band_order = list(range(n_out))
            else:
                mm_names = [geomeld_band(m, x) for x in _bands(m, mm_out[m])]
                band_order = [mm_names.index(x) for x in channels]
            idx = torch.tensor([pix * n_out + c for c in band_order for pix in range(p2)])
            out[f"decoder.heads.{ours}.weight"], out[f"decoder.heads.{ours}.bias"] = w[idx], b[idx]
        report.exact = False  # the encoder is; the decoders differ by their GRN eps only
        report.notes.append(
            "decoders: MMEarth's dense decoder Block uses GRN eps 1e-4, GeoMeld's 1e-6, so reconstructions differ "
            "slightly (6e-5 on outputs of magnitude 3 in the test); the encoder is exact"
        )
        if has_log_vars:
            log_vars = dec.take("loss_fn.log_vars", (len(mm_out),))
            names = list(mm_out)
            for m in mm_pixel:
                out[f"loss_log_vars.{MODALITY_NAMES[m]}"] = log_vars[names.index(m)].reshape(())
    dec.check_done(
        [r"^pred_dict\.", r"^decoder_dict\.", r"^layer_norm_tmp\.", r"^loss_fn\.log_vars$"], report
    )
    model = GeoMeldForPreTraining(config)
    load_into(model, out, report)
    return model, report


def _head_channels(modality: str, bands: list[str]) -> int:
    from ..modalities import get_modality

    mod = get_modality(modality)
    return mod.num_classes if mod.is_categorical else len(bands)


def _canonical_s2(band: str) -> int:
    from ..modalities import SENTINEL2_ALL_BANDS

    if band not in SENTINEL2_ALL_BANDS:
        raise ConversionError(f"MMEarth input band {band!r} is not a Sentinel-2 band")
    return SENTINEL2_ALL_BANDS.index(band)


def _read(path: Path) -> dict[str, Any]:
    from .common import load_checkpoint_object

    return load_checkpoint_object(path)
