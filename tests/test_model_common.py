"""A port of the relevant checks of transformers' `ModelTesterMixin` (tests/test_modeling_common.py) to GeoMeld.

Run against `GeoMeldVisionModel`, `GeoMeldModel`, both task heads and `GeoMeldForPreTraining` with the odd tiny
config of `_tiny.py` (widths 8/12/20/28, a 3 x 3 patch grid, batch 3). Upstream names are kept so a reader can
put the two side by side. Upstream checks that do not apply (attention outputs, input embeddings, token
resizing, head pruning, tied weights, generation, multi-GPU, flash/SDPA equivalence of the image encoder) are
listed with their reasons in the issue-12 report; the image encoder has no attention and no token embeddings.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from _tiny import captions, inputs, targets, tiny_config
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from modeling_geomeld import (
    GeoMeldConfig,
    GeoMeldForImageClassification,
    GeoMeldForPreTraining,
    GeoMeldForSemanticSegmentation,
    GeoMeldModel,
    GeoMeldVisionModel,
)
from modeling_geomeld.masking import random_patch_mask

B = 3  # odd, small
SIZE = 48
MODALITIES = ["sentinel2", "sentinel1"]
STAGE_SHAPES = [(8, 24, 24), (12, 12, 12), (20, 6, 6), (28, 3, 3)]  # stem stride 2, then /2 per stage


def _config(**overrides: Any) -> GeoMeldConfig:
    overrides.setdefault("segmentation_channels", [24, 18, 12, 10])  # a small UNet: the model stays under 1M
    return tiny_config(num_labels=3, **overrides)


def _pixels() -> dict[str, torch.Tensor]:
    return inputs(MODALITIES, batch=B, size=SIZE, seed=11)


def _model_inputs(cls: Any) -> dict[str, Any]:
    g = torch.Generator().manual_seed(5)
    if cls is GeoMeldModel:
        return {"pixel_values": _pixels(), **{k: v[:B] for k, v in captions().items()}, "return_loss": True}
    if cls is GeoMeldVisionModel:
        return {"pixel_values": _pixels()}
    if cls is GeoMeldForImageClassification:
        return {"pixel_values": _pixels(), "labels": torch.randint(0, 3, (B,), generator=g)}
    if cls is GeoMeldForSemanticSegmentation:
        return {"pixel_values": _pixels(), "labels": torch.randint(-1, 3, (B, SIZE, SIZE), generator=g)}
    mask = random_patch_mask(B, (3, 3), 0.6, generator=torch.Generator().manual_seed(0))  # fixed: deterministic
    return {
        "pixel_values": _pixels(),
        "targets": {k: v[:B] for k, v in targets().items()},
        **{k: v[:B] for k, v in captions().items()},
        "mask": mask,
    }


ALL_MODEL_CLASSES = [
    GeoMeldVisionModel,
    GeoMeldModel,
    GeoMeldForImageClassification,
    GeoMeldForSemanticSegmentation,
    GeoMeldForPreTraining,
]
WITH_LOSS = [GeoMeldModel, GeoMeldForImageClassification, GeoMeldForSemanticSegmentation, GeoMeldForPreTraining]
WITH_HIDDEN_STATES = [GeoMeldVisionModel, GeoMeldModel, GeoMeldForImageClassification, GeoMeldForSemanticSegmentation]
ids = [c.__name__ for c in ALL_MODEL_CLASSES]


def _build(cls: Any, seed: int = 0, **overrides: Any) -> Any:
    torch.manual_seed(seed)
    return cls(_config(**overrides))


def _leaves(x: Any) -> list[torch.Tensor]:
    """Every tensor of a (nested) output, in a fixed order (dict keys sorted)."""
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, ModelOutput):
        return _leaves(x.to_tuple())
    if isinstance(x, dict):
        return [t for k in sorted(x) for t in _leaves(x[k])]
    if isinstance(x, (tuple, list)):
        return [t for v in x for t in _leaves(v)]
    return []


def _assert_same(a: Any, b: Any, atol: float = 1e-5) -> None:
    la, lb = _leaves(a), _leaves(b)
    assert len(la) == len(lb) and la
    for x, y in zip(la, lb, strict=True):
        assert x.shape == y.shape
        assert torch.allclose(x.float(), y.float(), atol=atol, equal_nan=True), float((x - y).abs().max())


def _hidden(out: Any) -> tuple[torch.Tensor, ...] | None:
    return out.encoder_output.hidden_states if "encoder_output" in out else out.hidden_states


# --- upstream: test_save_load, test_determinism, test_forward_signature, test_model_main_input_name ---------------


@pytest.mark.parametrize("cls", ALL_MODEL_CLASSES, ids=ids)
def test_save_load_and_determinism(cls: Any, tmp_path: Path) -> None:
    model = _build(cls).eval()
    x = _model_inputs(cls)
    with torch.no_grad():
        first = model(**x)
        _assert_same(first, model(**x), atol=0.0)  # upstream test_determinism: two eval passes agree exactly
    model.save_pretrained(tmp_path)
    loaded, info = cls.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    with torch.no_grad():
        second = loaded.eval()(**x)
    _assert_same(first, second, atol=1e-5)


@pytest.mark.parametrize("cls", ALL_MODEL_CLASSES, ids=ids)
def test_forward_signature_and_unknown_keywords(cls: Any) -> None:
    params = list(inspect.signature(cls.forward).parameters)
    assert params[:2] == ["self", "pixel_values"] and cls.main_input_name == "pixel_values"
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(cls.forward).parameters.values())
    model = _build(cls).eval()
    with pytest.raises(TypeError, match="unexpected keyword argument 'pixel_mask'"):
        model(**_model_inputs(cls), pixel_mask=None)


# --- upstream: test_initialization (with _config_zero_init), test_model_is_small --------------------------------


@pytest.mark.parametrize("cls", ALL_MODEL_CLASSES, ids=ids)
def test_initialization(cls: Any) -> None:
    """Upstream sets every `*initializer_range` to 1e-10: then every initialised parameter has mean 0 or 1."""
    text = {**cast(PreTrainedConfig, _config().text_config).to_dict(), "initializer_range": 1e-10}
    model = _build(cls, encoder_config={"initializer_range": 1e-10}, text_config=text)
    for name, param in model.named_parameters():
        if name.endswith("logit_scale"):
            assert float(param.detach()) == pytest.approx(model.config.logit_scale_init)  # CLIP's test skips it too
            continue
        mean = round(float(param.detach().mean()) * 1e9) / 1e9
        assert mean in (0.0, 1.0), f"{name}: mean {mean}"
    assert model.num_parameters() < 1_000_000  # upstream test_model_is_small


# --- upstream: test_training, test_training_gradient_checkpointing -------------------------------------------------


@pytest.mark.parametrize("cls", WITH_LOSS, ids=[c.__name__ for c in WITH_LOSS])
def test_training(cls: Any) -> None:
    model = _build(cls).train()
    loss = model(**_model_inputs(cls)).loss
    assert loss is not None and loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    # every trainable parameter gets a gradient but the DEM stem (no DEM in the batch) and, for the UNet, which
    # reads the stage features, the pooler's norm; the EMA copy never gets one
    unused = (".dem", "geomeld.encoder.norm.") if cls is GeoMeldForSemanticSegmentation else (".dem",)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None and not any(u in n for u in unused)]
    assert missing == []
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith("ema_encoder."))


def _loss_and_grads(model: PreTrainedModel, cls: Any, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    torch.manual_seed(seed)  # the drop path draws (drop_path_rate 0.1 in the tiny config)
    loss = model(**_model_inputs(cls)).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("cls", WITH_LOSS, ids=[c.__name__ for c in WITH_LOSS])
def test_training_gradient_checkpointing(cls: Any) -> None:
    """Upstream checks that checkpointing trains; here also that the loss and every gradient are identical with
    it on, drop path included, and that the blocks really recompute in the backward pass."""
    assert cls.supports_gradient_checkpointing
    model = _build(cls).train()
    loss_plain, grads_plain = _loss_and_grads(model, cls, seed=3)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert model.is_activation_checkpointing
    calls = {"n": 0}
    block = model.base_model.encoder.stages[1][0]
    handle = block.pwconv1.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    loss_ckpt, grads_ckpt = _loss_and_grads(model, cls, seed=3)
    handle.remove()
    assert calls["n"] == 2  # the forward and its recomputation in backward
    assert torch.equal(loss_plain, loss_ckpt)
    assert grads_plain.keys() == grads_ckpt.keys()
    for name, g in grads_plain.items():
        assert torch.allclose(g, grads_ckpt[name], rtol=1e-5, atol=1e-7), name
    model.activation_checkpointing_disable()
    assert not model.is_activation_checkpointing


def test_reentrant_gradient_checkpointing_gives_the_same_gradients() -> None:
    cls = GeoMeldForImageClassification
    model = _build(cls).train()
    _, plain = _loss_and_grads(model, cls, seed=4)
    with pytest.warns(FutureWarning):  # the transformers 4 name, still accepted
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    _, ckpt = _loss_and_grads(model, cls, seed=4)
    assert plain.keys() == ckpt.keys()
    assert all(torch.allclose(plain[n], ckpt[n], rtol=1e-5, atol=1e-7) for n in plain)


# --- upstream: test_hidden_states_output, test_retain_grad_hidden_states_attentions ------------------------------


@pytest.mark.parametrize("cls", WITH_HIDDEN_STATES, ids=[c.__name__ for c in WITH_HIDDEN_STATES])
def test_hidden_states_output(cls: Any) -> None:
    """As upstream's ConvNeXt test: `num_stages + 1` hidden states, the first one the embedding output; asked
    for by keyword or by the config; absent otherwise."""
    expected = [(B, *STAGE_SHAPES[0]), *[(B, *s) for s in STAGE_SHAPES]]
    model = _build(cls).eval()
    with torch.no_grad():
        by_kwarg = _hidden(model(**_model_inputs(cls), output_hidden_states=True))
        default = _hidden(model(**_model_inputs(cls)))
    assert by_kwarg is not None and [tuple(h.shape) for h in by_kwarg] == expected
    assert default is None
    config = _config(output_hidden_states=True)
    torch.manual_seed(0)
    with torch.no_grad():
        by_config = _hidden(cls(config).eval()(**_model_inputs(cls)))
    assert by_config is not None and [tuple(h.shape) for h in by_config] == expected
    _assert_same(by_kwarg, by_config, atol=0.0)
    # the last hidden state is the encoder's output, the first the fused stem output entering stage 1
    encoder = model.base_model.encoder
    with torch.no_grad():
        raw = encoder(_pixels())
    assert torch.equal(by_kwarg[-1], raw.last_hidden_state) and torch.equal(by_kwarg[0], raw.embedding_output)


def test_retain_grad_hidden_states() -> None:
    model = _build(GeoMeldForImageClassification).train()
    out = model(**_model_inputs(GeoMeldForImageClassification), output_hidden_states=True)
    first = out.hidden_states[0]
    first.retain_grad()
    out.loss.backward()
    assert first.grad is not None and first.grad.abs().sum() > 0


# --- upstream: test_model_outputs_equivalence (return_dict=False) ------------------------------------------------


@pytest.mark.parametrize("cls", ALL_MODEL_CLASSES, ids=ids)
def test_model_outputs_equivalence(cls: Any) -> None:
    model = _build(cls).eval()
    options: list[dict[str, Any]] = [{}]
    if cls in WITH_HIDDEN_STATES:
        options.append({"output_hidden_states": True})
    for extra in options:
        x = {**_model_inputs(cls), **extra}
        with torch.no_grad():
            as_dict = model(**x, return_dict=True)
            as_tuple = model(**x, return_dict=False)
        assert isinstance(as_dict, ModelOutput) and type(as_tuple) is tuple

        def no_model_output(v: Any) -> bool:
            if isinstance(v, ModelOutput):
                return False
            return all(no_model_output(i) for i in v) if isinstance(v, tuple) else True

        assert no_model_output(as_tuple)
        _assert_same(as_dict, as_tuple, atol=0.0)
    torch.manual_seed(0)
    with torch.no_grad():
        by_config = cls(_config(return_dict=False)).eval()(**_model_inputs(cls))
    assert type(by_config) is tuple


# --- upstream: test_correct_missing_keys, test_load_with_mismatched_shapes ----------------------------------------


@pytest.mark.parametrize("cls", [GeoMeldForImageClassification, GeoMeldForSemanticSegmentation], ids=["cls", "seg"])
def test_correct_missing_keys(cls: Any, tmp_path: Path) -> None:
    model = _build(cls)
    assert isinstance(model.base_model, GeoMeldVisionModel) and model.base_model is model.geomeld
    model.base_model.save_pretrained(tmp_path)
    again, info = cls.from_pretrained(tmp_path, output_loading_info=True)
    missing = set(info["missing_keys"])
    assert missing and all(k.startswith(("classifier.", "decode_head.")) for k in missing)
    assert not info["unexpected_keys"]
    reference = model.base_model.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in again.base_model.state_dict().items())
    vision = GeoMeldVisionModel.from_pretrained(tmp_path)
    assert all(torch.equal(v, reference[k]) for k, v in vision.state_dict().items())


def test_load_with_mismatched_shapes(tmp_path: Path) -> None:
    _build(GeoMeldForImageClassification).save_pretrained(tmp_path)
    with pytest.raises(RuntimeError, match="mismatch"):
        GeoMeldForImageClassification.from_pretrained(tmp_path, num_labels=5)
    model, info = GeoMeldForImageClassification.from_pretrained(
        tmp_path, num_labels=5, ignore_mismatched_sizes=True, output_loading_info=True
    )
    assert model.classifier.out_features == 5 and info["mismatched_keys"]
    with torch.no_grad():
        assert model.eval()(_pixels()).logits.shape == (B, 5)


# --- upstream: test_torch_compile_for_training / test_torch_compile ------------------------------------------------


def test_torch_compile_matches_eager() -> None:
    """One graph (fullgraph) for a head's forward and backward; aot_eager keeps the CPU test fast while still
    tracing through AOT autograd (the export issue benchmarks inductor)."""
    torch._dynamo.reset()
    model = _build(GeoMeldForImageClassification, encoder_config={"drop_path_rate": 0.0}).train()
    x = _model_inputs(GeoMeldForImageClassification)
    eager = model(**x)
    eager.loss.backward()
    eager_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out = compiled(**x)
    out.loss.backward()
    assert torch.allclose(out.logits, eager.logits, atol=1e-5)
    assert all(torch.allclose(p.grad, eager_grads[n], atol=1e-6) for n, p in model.named_parameters() if p.grad is not None)


# --- attention implementation --------------------------------------------------------------------------------------


def test_sdpa_loads_and_reaches_the_text_tower(tmp_path: Path) -> None:
    model = _build(GeoMeldModel).eval()
    model.save_pretrained(tmp_path)
    x = _model_inputs(GeoMeldModel)
    outs = {}
    for impl in ("sdpa", "eager"):
        loaded = GeoMeldModel.from_pretrained(tmp_path, attn_implementation=impl).eval()
        assert loaded.config._attn_implementation == impl
        assert loaded.text_model.config._attn_implementation == impl
        with torch.no_grad():
            outs[impl] = loaded(**x)
    _assert_same(outs["sdpa"], outs["eager"], atol=1e-5)
    pre = GeoMeldForPreTraining.from_pretrained(tmp_path, attn_implementation="sdpa")
    assert pre.geomeld.text_model.config._attn_implementation == "sdpa"


# --- problem types (upstream: test_problem_types) ---------------------------------------------------------------


@dataclass
class _Case:
    problem_type: str | None
    num_labels: int
    labels: Callable[[torch.Generator], torch.Tensor]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


PROBLEMS = {
    "regression": _Case("regression", 1, lambda g: torch.randn(B, generator=g),
                        lambda lo, la: torch.nn.functional.mse_loss(lo.squeeze(-1), la)),
    "regression-3": _Case("regression", 3, lambda g: torch.randn(B, 3, generator=g),
                          lambda lo, la: torch.nn.functional.mse_loss(lo, la)),
    "inferred-regression": _Case(None, 1, lambda g: torch.randn(B, generator=g),
                                 lambda lo, la: torch.nn.functional.mse_loss(lo.squeeze(-1), la)),
    "single_label": _Case("single_label_classification", 3, lambda g: torch.randint(0, 3, (B,), generator=g),
                          lambda lo, la: torch.nn.functional.cross_entropy(lo, la)),
    "inferred-single": _Case(None, 3, lambda g: torch.randint(0, 3, (B,), generator=g),
                             lambda lo, la: torch.nn.functional.cross_entropy(lo, la)),
    "multi_label": _Case("multi_label_classification", 3, lambda g: torch.randint(0, 2, (B, 3), generator=g).float(),
                         lambda lo, la: torch.nn.functional.binary_cross_entropy_with_logits(lo, la)),
    "inferred-multi": _Case(None, 3, lambda g: torch.randint(0, 2, (B, 3), generator=g).float(),
                            lambda lo, la: torch.nn.functional.binary_cross_entropy_with_logits(lo, la)),
}  # fmt: skip


@pytest.mark.parametrize("case", PROBLEMS.values(), ids=list(PROBLEMS))
def test_problem_types(case: _Case) -> None:
    torch.manual_seed(0)
    model = GeoMeldForImageClassification(tiny_config(num_labels=case.num_labels, problem_type=case.problem_type)).eval()
    labels = case.labels(torch.Generator().manual_seed(1))
    out = model(_pixels(), labels=labels)
    assert torch.allclose(out.loss, case.loss(out.logits, labels), atol=1e-6)
    assert model.config.problem_type == case.problem_type  # a forward pass does not rewrite the config
    out.loss.backward()
    assert model.classifier.weight.grad is not None


def test_problem_type_errors() -> None:
    with pytest.raises(ValueError, match="problem_type must be one of"):
        GeoMeldForImageClassification(tiny_config(num_labels=3, problem_type="ordinal"))
    model = GeoMeldForImageClassification(tiny_config(num_labels=3, problem_type="regression"))
    with pytest.raises(ValueError, match=r"regression targets must be \(B, 3\)"):
        model(_pixels(), labels=torch.randn(B))


# --- checkpoint keys unchanged -------------------------------------------------------------------------------------

# Written down from `git show main:modeling_geomeld/modeling_geomeld.py` (before GeoMeldVisionModel): the
# encoder's keys for the tiny config (3 input modalities, depths 1/2/1/1) and each head's own keys.
_BLOCK = "dwconv.weight dwconv.bias norm.weight norm.bias pwconv1.weight pwconv1.bias grn.gamma grn.beta pwconv2.weight pwconv2.bias"
OLD_ENCODER_KEYS = (
    [f"stems.{m}.{p}" for m in ("sentinel2", "sentinel1", "dem") for p in ("conv.weight", "conv.bias", "norm.weight", "norm.bias")]
    + ["modality_embeddings.dem", "modality_embeddings.sentinel1", "modality_embeddings.sentinel2"]
    + [f"downsamples.{i}.{p}" for i in (1, 2, 3) for p in ("norm.weight", "norm.bias", "conv.weight", "conv.bias")]
    + [f"stages.{s}.{b}.{p}" for s, b in ((0, 0), (1, 0), (1, 1), (2, 0), (3, 0)) for p in _BLOCK.split()]
    + ["norm.weight", "norm.bias"]
)
OLD_CLASSIFIER_HEAD = ["classifier.weight", "classifier.bias"]
OLD_SEGMENTATION_HEAD = [
    f"decode_head.blocks.{i}.{p}"
    for i in range(4)
    for p in ("conv1.weight", "conv1.bias", "norm1.weight", "norm1.bias", "conv2.weight", "conv2.bias", "norm2.weight", "norm2.bias")
] + ["decode_head.classifier.weight", "decode_head.classifier.bias"]


def test_checkpoint_keys_are_unchanged() -> None:
    assert len(OLD_ENCODER_KEYS) == 79
    enc = ["geomeld.encoder." + k for k in OLD_ENCODER_KEYS]
    assert list(_build(GeoMeldForImageClassification).state_dict()) == enc + OLD_CLASSIFIER_HEAD
    assert list(_build(GeoMeldForSemanticSegmentation).state_dict()) == enc + OLD_SEGMENTATION_HEAD
    assert list(_build(GeoMeldVisionModel).state_dict()) == ["encoder." + k for k in OLD_ENCODER_KEYS]
    released = list(_build(GeoMeldModel).state_dict())
    assert [k for k in released if k.startswith("encoder.")] == ["encoder." + k for k in OLD_ENCODER_KEYS]
    assert {"logit_scale", "visual_projection.weight", "text_projection.weight"} <= set(released)
    pre = list(_build(GeoMeldForPreTraining).state_dict())
    assert [k for k in pre if k.startswith("geomeld.encoder.")] == enc and [k for k in pre if k.startswith("ema_encoder.")] == ["ema_encoder." + k for k in OLD_ENCODER_KEYS]


def test_a_checkpoint_in_the_old_layout_loads_into_every_head(tmp_path: Path) -> None:
    """A pretraining checkpoint (the layout every release so far has) loads into the heads and the vision model
    with only the new head weights missing."""
    pre = _build(GeoMeldForPreTraining)
    pre.save_pretrained(tmp_path)
    reference = pre.geomeld.encoder.state_dict()
    for cls, head in ((GeoMeldForImageClassification, OLD_CLASSIFIER_HEAD), (GeoMeldForSemanticSegmentation, OLD_SEGMENTATION_HEAD)):
        model, info = cls.from_pretrained(tmp_path, num_labels=3, output_loading_info=True)
        assert set(info["missing_keys"]) == set(head) and not info["unexpected_keys"], cls.__name__
        assert all(torch.equal(v, reference[k]) for k, v in model.geomeld.encoder.state_dict().items())
    vision, info = GeoMeldVisionModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert all(torch.equal(v, reference[k]) for k, v in vision.encoder.state_dict().items())


def test_base_model_save_pretrained_round_trips(tmp_path: Path) -> None:
    seg = _build(GeoMeldForSemanticSegmentation).eval()
    seg.base_model.save_pretrained(tmp_path)
    vision = GeoMeldVisionModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        a, b = seg.base_model(_pixels()), vision(_pixels())
    _assert_same(a, b, atol=0.0)
    assert copy.deepcopy(vision.config.auto_map)["AutoModel"] == "modeling_geomeld.GeoMeldVisionModel"
