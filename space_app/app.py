"""GeoMeld retrieval Space: text -> image and image -> text search over a built GeoMeld dataset.

Run ``geomeld serve --checkpoint CKPT --index INDEX --dataset DIR --port P``, or ``python space_app/app.py``
on a Hugging Face Space, where the three paths come from ``GEOMELD_CHECKPOINT``, ``GEOMELD_INDEX`` and
``GEOMELD_DATASET`` (defaults: the outputs of ``geomeld demo``).

* Text to image: a query (with region and date filters applied inside FAISS) returns a gallery of true-colour
  thumbnails labelled with score, place and date; selecting one shows every modality of the sample side by
  side, its caption, each claim of the caption with the verifier's verdict, and its place on a map.
* Image to text: the selected sample, or an uploaded Sentinel-2 / Sentinel-1 GeoTIFF (validated and aligned
  onto the model's grid by the builder's code), embedded with all or a subset of the model's input
  modalities; returns the best captions and the most similar images.

``RetrievalService`` holds the logic and is what the tests call directly; ``build_demo`` only lays out the
Blocks and turns ``ValueError`` into a message in the one status area, so a bad query shows it once and
the app keeps serving. A banner says which checkpoint is served and how it was trained (``about.py``),
and whether it is only a pipeline check; the footer carries the data's attribution.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

if __package__ in (None, ""):  # `python space_app/app.py` on a Space: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "space_app"

from space_app.about import attribution_html, read_model_info
from space_app.index import SearchFilter
from space_app.retrieval import Embedder, load_retrieval_index, weights_digest
from space_app.uploads import (
    MAX_UPLOAD_MB,
    PRODUCTS,
    UploadError,
    discard_upload,
    product_modality,
    validate_upload,
)
from space_app.views import (
    SampleStore,
    describe,
    legends_html,
    location_map,
    modality_panels,
    thumbnail,
    verified_facts,
)

log = logging.getLogger("geomeld.space")

ENV_VARS = {"checkpoint": "GEOMELD_CHECKPOINT", "index": "GEOMELD_INDEX", "dataset": "GEOMELD_DATASET"}
DEFAULTS = {"checkpoint": "outputs/demo/checkpoint", "index": "outputs/demo/index", "dataset": "outputs/demo/dataset"}
SUBSET_CHOICES = {"all inputs": None, "Sentinel-2 only": ("sentinel2",), "Sentinel-1 only": ("sentinel1",)}
ERROR_MARK = "⚠️"
SOURCES = ("selected sample", "uploaded GeoTIFF")
MAX_K = 24
MAX_QUERY_CHARS = 300
MAP_POINTS = 5000
EXAMPLE_QUERIES = (
    "snow-covered lowlands with frozen lakes",
    "a river winding through forest",
    "cropland and scattered trees",
    "a coastal town by the sea",
)
CSS = """
.geomeld-swatch { display:inline-flex; align-items:center; margin:0 10px 4px 0; font-size:0.85em; }
.geomeld-swatch i { width:12px; height:12px; margin-right:4px; border:1px solid #0003; display:inline-block; }
.geomeld-scale { display:flex; align-items:center; gap:6px; margin:0 0 4px 0; font-size:0.85em; flex-wrap:wrap; }
.geomeld-scale i { width:160px; max-width:40vw; height:12px; border:1px solid #0003; display:inline-block; }
/* gallery labels wrap under the picture instead of being cut with an ellipsis over it */
#results .caption-label, #similar .caption-label, #modalities .caption-label { position:static; max-width:100%; white-space:normal;
  overflow:visible; text-overflow:clip; opacity:1; border:none; }
#results .thumbnail-item, #similar .thumbnail-item, #modalities .thumbnail-item { display:flex; flex-direction:column; height:auto; aspect-ratio:auto; }
#results .thumbnail-item img, #similar .thumbnail-item img, #modalities .thumbnail-item img { aspect-ratio:1 / 1; height:auto; }
/* the galleries grow with their rows: no inner scroll box that hides the last row */
#results .grid-wrap, #similar .grid-wrap, #modalities .grid-wrap { height:auto !important; max-height:none !important; overflow:visible !important; }
@media (max-width: 700px) {
  #results .grid-container, #similar .grid-container, #modalities .grid-container { grid-template-columns:repeat(2, minmax(0, 1fr)) !important; }
}
#banner { border-left:4px solid #c77d00; padding-left:10px; }
#attribution { font-size:0.8em; opacity:0.85; }
"""


def resolve_paths(checkpoint: str | None = None, index: str | None = None, dataset: str | None = None) -> tuple[Path, Path, Path]:
    """Arguments first, then ``GEOMELD_*`` environment variables, then the demo's outputs; each must exist."""
    given = {"checkpoint": checkpoint, "index": index, "dataset": dataset}
    paths = {}
    for name, value in given.items():
        chosen = value or os.environ.get(ENV_VARS[name]) or DEFAULTS[name]
        path = Path(chosen)
        if not path.exists():
            how = {
                "checkpoint": "run `geomeld demo` (or `geomeld pretrain`)",
                "dataset": "run `geomeld demo` (or `geomeld build`)",
                "index": "run `geomeld index --checkpoint CKPT --dataset DIR --out INDEX`",
            }[name]
            raise FileNotFoundError(
                f"expected a {name} folder at {path} (from --{name}, ${ENV_VARS[name]} or the demo default), "
                f"found nothing; {how}"
            )
        paths[name] = path
    return paths["checkpoint"], paths["index"], paths["dataset"]


@dataclass
class Hit:
    tile_id: str
    score: float
    metadata: dict[str, Any]


def _parse_day(text: str, what: str) -> date | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(f"{what} must be a date YYYY-MM-DD, found {text!r}") from None


def check_lat_lon(lat: float, lon: float, what: str) -> None:
    """``ValueError`` unless ``lat`` is a number within -90..90 and ``lon`` within -180..180 (NaN refused)."""
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise ValueError(f"{what}: expected finite numbers, found lat {lat}, lon {lon}")
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"{what}: expected a latitude within -90..90, found {lat}")
    if not -180.0 <= lon <= 180.0:
        raise ValueError(f"{what}: expected a longitude within -180..180, found {lon}")


def input_choices(input_modalities: Sequence[str]) -> tuple[dict[str, tuple[str, ...] | None], dict[str, str]]:
    """The modality subsets and upload products a model with these image inputs can embed.

    "all inputs" always; a single-modality subset only when the model takes that modality and another one
    (for a one-input model it is the same as "all inputs"); a product only when its modality is an input.
    """
    subsets: dict[str, tuple[str, ...] | None] = {"all inputs": None}
    if len(input_modalities) > 1:
        subsets.update({label: mods for label, mods in SUBSET_CHOICES.items() if mods and mods[0] in input_modalities})
    products = {label: name for label, name in PRODUCTS.items() if product_modality(name) in input_modalities}
    return subsets, products


def make_filter(regions: Sequence[str] | None, bbox: str | None, date_from: str | None, date_to: str | None) -> SearchFilter | None:
    """The search filter of the UI's fields; ``ValueError`` names the field that is wrong."""
    box = None
    if bbox and bbox.strip():
        parts = [p for p in re.split(r"[,\s]+", bbox.strip()) if p]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 4:
            raise ValueError(f"bounding box must be four numbers min_lon,min_lat,max_lon,max_lat, found {bbox!r}")
        min_lon, min_lat, max_lon, max_lat = values
        check_lat_lon(min_lat, min_lon, "bounding box corner (min_lon, min_lat)")
        check_lat_lon(max_lat, max_lon, "bounding box corner (max_lon, max_lat)")
        if min_lat > max_lat:
            raise ValueError(f"bounding box: expected min_lat <= max_lat, found {min_lat} > {max_lat}")
        box = (min_lon, min_lat, max_lon, max_lat)
    start, end = _parse_day(date_from or "", "'from' date"), _parse_day(date_to or "", "'to' date")
    dates = None
    if start or end:
        dates = (start or date(1900, 1, 1), end or date(2999, 12, 31))
    flt = SearchFilter(bbox=box, date_range=dates, countries=tuple(regions) if regions else None)
    return flt if flt.active else None


class RetrievalService:
    """The Space's logic: indexes, the model's two towers and the dataset's rows, behind plain methods."""

    def __init__(self, checkpoint: str | Path, index: str | Path, dataset: str | Path, embedder: Embedder | None = None):
        self.embedder = embedder or Embedder(checkpoint)
        self.images, self.texts, self.info = load_retrieval_index(index)
        digest = weights_digest(checkpoint)
        if self.info.get("weights_sha256") != digest:
            raise ValueError(
                f"the index {index} was built with other weights ({self.info.get('checkpoint')}); its vectors do not "
                f"match {checkpoint}: rebuild it with `geomeld index --checkpoint {checkpoint}`"
            )
        self.store = SampleStore(dataset)
        missing = [t for t in (self.images.id_of(r) for r in range(min(len(self.images), 50))) if t not in self.store]
        if missing:
            raise ValueError(f"the index holds tiles that are not in the dataset {dataset} (e.g. {missing[0]!r}); wrong --dataset?")
        self.size_px = self._grid_size()
        self.model_info = read_model_info(checkpoint, self.embedder.input_modalities)
        self.subsets, self.products = input_choices(self.embedder.input_modalities)
        self.layers = self.store.modalities()
        rows = range(0, len(self.images), max(1, len(self.images) // MAP_POINTS))
        self.points = [
            (float(m["lat"]), float(m["lon"]))
            for m in (self.images.metadata_of(r) for r in rows)
            if m.get("lat") is not None and m.get("lon") is not None
        ]

    def _grid_size(self) -> int:
        row = self.store.row(self.images.id_of(0))
        shape = next((row[f"{m}_shape"] for m in ("sentinel2", "sentinel1") if row.get(f"{m}_shape")), None)
        return int(shape[-1]) if shape else 128

    # ----------------------------------------------------------------------------------------------- facts
    def regions(self) -> list[tuple[str, str]]:
        """(label, country code) for every country in the index, for the region filter."""
        from dataset_scripts.captions.gazetteer import COUNTRIES

        return [(f"{COUNTRIES.get(c, (c,))[0]} ({c})", c) for c in self.images.countries()]

    def example_queries(self) -> list[str]:
        """The built-in examples plus the short first sentences of a few real captions of this collection."""
        out = list(EXAMPLE_QUERIES)
        for row in range(min(len(self.texts), 200)):
            sentence = self.store.summary(self.texts.id_of(row))["caption"].split(". ")[0].strip().rstrip(".")
            if 4 <= len(sentence.split()) <= 14 and sentence not in out:
                out.append(sentence)
            if len(out) >= len(EXAMPLE_QUERIES) + 3:
                break
        return out

    def summary(self) -> str:
        info = self.info
        return (
            f"**{len(self.images):,} samples** and **{len(self.texts):,} captions** indexed "
            f"({self.images.kind}, {info['dim']}-d) with checkpoint `{Path(info['checkpoint']).name}` "
            f"(inputs: {', '.join(self.embedder.input_modalities)})."
        )

    # ---------------------------------------------------------------------------------------------- search
    def _hits(self, index: Any, vectors: np.ndarray, k: int, flt: SearchFilter | None) -> list[Hit]:
        k = max(1, min(int(k), MAX_K, len(index)))
        result = index.search(vectors, k=k, filter=flt)
        return [
            Hit(tile_id, float(score), {**meta, **self.store.summary(tile_id)})
            for tile_id, score, meta in zip(result.ids[0], result.scores[0][result.rows[0] >= 0], result.metadata[0], strict=True)
        ]

    def search_text(
        self, query: str, k: int = 8, regions: Sequence[str] | None = None, bbox: str | None = None,
        date_from: str | None = None, date_to: str | None = None,
    ) -> list[Hit]:  # fmt: skip
        query = (query or "").strip()
        if not query:
            raise ValueError("type a description to search for, e.g. 'a river winding through forest'")
        if len(query) > MAX_QUERY_CHARS:
            raise ValueError(f"the query is too long: expected at most {MAX_QUERY_CHARS} characters, found {len(query)}")
        flt = make_filter(regions, bbox, date_from, date_to)
        return self._hits(self.images, self.embedder.embed_texts([query]), k, flt)

    def detail(self, tile_id: str) -> dict[str, Any]:
        """Everything the sample panel shows."""
        from dataset_scripts.loading import band_names, decode_row

        tile_id = (tile_id or "").strip()
        if not tile_id:
            raise ValueError("select a result (or type a tile id) to see its modalities")
        if tile_id not in self.store:
            raise ValueError(f"no sample with tile id {tile_id!r} in this dataset")
        row = self.store.row(tile_id)
        arrays, bands = decode_row(row), band_names(row)
        lat, lon = row.get("lat"), row.get("lon")
        meta = self.store.summary(tile_id)
        title = describe(meta)
        panels = []
        for image, label in modality_panels(arrays, bands):
            panels.append((self.store.picture(f"{tile_id}/{label}", functools.partial(np.asarray, image)), label))
        where = None
        if lat is not None and lon is not None:
            where = self.store.picture(f"{tile_id}/map", lambda: location_map(float(lat), float(lon), self.points, title))
        return {
            "tile_id": tile_id,
            "caption": row.get("caption") or "(no caption)",
            "panels": panels,
            "legend": legends_html(arrays, bands),
            "facts": verified_facts(row),
            "map": where,
            "metadata": {"lat": lat, "lon": lon, "date": row.get("datetime"), "place": meta.get("place"), "split": row.get("split")},
        }

    def image_to_text(
        self, tile_id: str | None = None, sample: dict[str, Any] | None = None, modalities: Sequence[str] | None = None,
        k: int = 5, exclude_self: bool = True,
    ) -> dict[str, Any]:  # fmt: skip
        """Best captions and most similar images for a dataset sample (by tile id) or an aligned upload."""
        from modeling_geomeld.training.pretraining import row_to_sample

        if sample is None:
            if not tile_id:
                raise ValueError("select a sample in the text -> image tab first, or upload a GeoTIFF")
            if tile_id not in self.store:
                raise ValueError(f"no sample with tile id {tile_id!r} in this dataset")
            sample = row_to_sample(self.store.row(tile_id))
        vector = self.embedder.embed_samples([sample], modalities)
        captions = self._hits(self.texts, vector, k, None)
        similar = self._hits(self.images, vector, min(k + 1, len(self.images)), None)
        if exclude_self and tile_id:
            similar = [h for h in similar if h.tile_id != tile_id]
        return {"captions": captions, "similar": similar[:k]}


# ------------------------------------------------------------------------------------------------------ UI
QUERY_IMAGE_PX = 320


def enlarge(image: np.ndarray, size: int = QUERY_IMAGE_PX) -> np.ndarray:
    """Nearest-neighbour enlargement by a whole factor so a 64-128 px grid reads at ~``size`` px, pixels kept sharp."""
    factor = max(1, size // max(image.shape[:2]))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1) if factor > 1 else image


def user_message(err: BaseException) -> str | None:
    """The message of a user's mistake (shown in the status area), or ``None`` for a fault of the Space."""
    if isinstance(err, gr.Error):
        return str(err.message)
    if isinstance(err, KeyError):
        return str(err.args[0]) if err.args else str(err)
    if isinstance(err, (ValueError, UploadError)):
        return str(err)
    return None


def _into_status(fn: Callable[..., tuple[Any, ...]], outputs: int) -> Callable[..., tuple[Any, ...]]:
    """Run ``fn``; on failure leave its ``outputs`` data components as they are (``gr.skip()``) and put the
    message into the one status area (the last output). No exception reaches Gradio, so no error toast
    stacks up and no output panel shows an "Error" pill; the next success overwrites the message."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            message = user_message(err)
            if message is None:
                log.exception("unexpected error in %s", fn.__name__)
                message = f"internal error ({type(err).__name__}); the server log has the details"
            return (*(gr.skip() for _ in range(outputs)), f"{ERROR_MARK} {message}")

    return wrapper


def build_demo(service: RetrievalService) -> Any:
    """The Blocks app over ``service``. API names: ``search``, ``sample``, ``image_to_text``.

    Every event's last output is the status area at the top: a one-line summary of the last success, or the
    message of the last mistake (starting with ``ERROR_MARK``).
    """

    gr.set_static_paths([service.store.cache_dir])  # pictures are written once, atomically: serve them as they are

    def gallery_items(hits: Sequence[Hit], with_score: bool = True) -> list[tuple[str, str]]:
        return [(service.store.thumbnail(h.tile_id), describe(h.metadata, h.score if with_score else None)) for h in hits]

    def search(query: str, k: float, regions: list[str] | None, bbox: str, date_from: str, date_to: str) -> tuple[Any, ...]:
        hits = service.search_text(query, int(k), regions, bbox, date_from, date_to)
        note = f"{len(hits)} matches for “{query.strip()}”." if hits else "No sample matches these filters; widen the region or dates."
        return gallery_items(hits), [h.tile_id for h in hits], note

    def show(tile_id: str) -> tuple[Any, ...]:
        d = service.detail(tile_id)
        m = d["metadata"]
        caption = f"**{d['caption']}**\n\n`{d['tile_id']}` · {m.get('place') or ''} · {m.get('date') or ''} · split {m.get('split')}"
        return d["tile_id"], caption, d["panels"], d["legend"], d["facts"], d["map"], f"Sample `{d['tile_id']}`."

    def on_select(tile_ids: list[str], evt: gr.SelectData) -> tuple[Any, ...]:
        index = evt.index if isinstance(evt.index, int) else None
        if not tile_ids or index is None or not 0 <= index < len(tile_ids):
            raise ValueError("that result is no longer listed; search again")
        return show(tile_ids[index])

    def to_text(source: str, upload: Any, product: str, subset: str, tile_id: str, k: float) -> tuple[Any, ...]:
        if subset not in service.subsets:
            raise ValueError(f"expected the modalities to be one of {', '.join(service.subsets)}, found {subset!r}")
        modalities = service.subsets[subset]
        if source == SOURCES[1]:
            path = upload if isinstance(upload, str) else getattr(upload, "name", None)
            if not path:
                raise ValueError("upload a Sentinel-2 or Sentinel-1 GeoTIFF first")
            try:
                if product not in service.products:
                    raise ValueError(f"this model takes {', '.join(service.products)} uploads, found {product!r}")
                uploaded = validate_upload(path, service.products[product], size_px=service.size_px)
                result = service.image_to_text(sample=uploaded.as_sample(), modalities=modalities, k=int(k))
                query_image = enlarge(thumbnail(uploaded.arrays, uploaded.bands))
            finally:
                discard_upload(path)  # used once: never kept on the server, good or bad
            where = f"{uploaded.name}: aligned onto a {service.size_px} x {service.size_px} grid at 10 m around {uploaded.metadata['lat']:.4f}, {uploaded.metadata['lon']:.4f}"
        else:
            result = service.image_to_text(tile_id=(tile_id or "").strip(), modalities=modalities, k=int(k))
            from PIL import Image

            with Image.open(service.store.thumbnail(tile_id.strip())) as picture:
                query_image = enlarge(np.asarray(picture.convert("RGB")))
            where = f"sample {tile_id.strip()}"
        rows = [[i + 1, round(h.score, 3), h.metadata.get("caption", ""), h.tile_id] for i, h in enumerate(result["captions"])]
        return rows, gallery_items(result["similar"]), query_image, None, f"Query: {where} ({subset})."

    info = service.model_info
    with gr.Blocks(title="GeoMeld retrieval", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# GeoMeld: image ↔ text retrieval over aligned multimodal Earth observation\n" + service.summary())
        gr.Markdown(info.banner_markdown(), elem_id="banner")
        status = gr.Markdown(elem_id="status")
        result_ids = gr.State([])
        with gr.Tab("Text → image"):
            with gr.Row():
                query = gr.Textbox(label="Describe a place", placeholder="e.g. a river winding through forest", scale=4, min_width=260, elem_id="query")
                k = gr.Slider(1, MAX_K, value=8, step=1, label="results", scale=1, min_width=160)
            with gr.Accordion("Filters: region and date", open=False), gr.Row():
                regions = gr.Dropdown(choices=service.regions(), multiselect=True, label="Region (country)")
                bbox = gr.Textbox(label="Bounding box: min_lon, min_lat, max_lon, max_lat", placeholder="-90, 40, -70, 60")
                date_from = gr.Textbox(label="From (YYYY-MM-DD)")
                date_to = gr.Textbox(label="To (YYYY-MM-DD)")
            search_button = gr.Button("Search", variant="primary", elem_id="search")
            gr.Examples(examples=[[q] for q in service.example_queries()], inputs=[query], label="Examples")
            gallery = gr.Gallery(label="Top matches (score · place · date)", columns=4, height="auto", allow_preview=False, object_fit="contain", elem_id="results")
        with gr.Tab("Image → text"):
            with gr.Row():
                source = gr.Radio(list(SOURCES), value=SOURCES[0], label="Query with", min_width=200)
                subset = gr.Radio(list(service.subsets), value="all inputs", label="Modalities to embed", min_width=200)
                k_text = gr.Slider(1, MAX_K, value=5, step=1, label="results", min_width=160)
            with gr.Row():
                upload = gr.File(label=f"GeoTIFF upload ({' or '.join(service.products)}, at most {MAX_UPLOAD_MB} MB)", elem_id="upload", min_width=260)
                product = gr.Dropdown(list(service.products), value=next(iter(service.products), None), label="Product of the upload", min_width=200)
            to_text_button = gr.Button("Find captions and similar images", variant="primary", elem_id="to-text")
            with gr.Row(equal_height=False):
                query_image = gr.Image(label="Query image (true colour)", height=320, min_width=300, scale=1, elem_id="query-image")
                captions = gr.Dataframe(
                    headers=["#", "score", "caption", "tile"], label="Best captions (by rank)", wrap=True, scale=2, min_width=320,
                    column_widths=["8%", "17%", "47%", "28%"], elem_id="captions",
                )  # fmt: skip
            similar = gr.Gallery(label="Most similar images", columns=5, height="auto", allow_preview=False, object_fit="contain", elem_id="similar")
        gr.Markdown("## Selected sample")
        selected = gr.Textbox(label="Tile id (select a result, or type one and press Enter)", elem_id="selected")
        caption = gr.Markdown(elem_id="caption")
        panels = gr.Gallery(label="Every modality", columns=5, height="auto", allow_preview=True, object_fit="contain", elem_id="modalities")
        legend = gr.HTML(elem_id="legend")
        facts = gr.Dataframe(
            headers=["claim", "verdict", "fact", "why"], label="Caption claims checked against the sample's data", wrap=True,
            column_widths=["24%", "18%", "30%", "28%"], elem_id="facts",
        )  # fmt: skip
        location = gr.Image(label="Location", elem_id="map")
        gr.HTML(attribution_html(service.layers, info.corpora), elem_id="attribution")

        detail_outputs = [selected, caption, panels, legend, facts, location, status]
        search_inputs = [query, k, regions, bbox, date_from, date_to]
        search_outputs = [gallery, result_ids, status]
        search_button.click(_into_status(search, 2), search_inputs, search_outputs, api_name="search")
        query.submit(_into_status(search, 2), search_inputs, search_outputs, api_visibility="private")
        gallery.select(_into_status(on_select, 6), [result_ids], detail_outputs, api_visibility="private")
        selected.submit(_into_status(show, 6), [selected], detail_outputs, api_name="sample")
        to_text_button.click(
            _into_status(to_text, 4), [source, upload, product, subset, selected, k_text], [captions, similar, query_image, upload, status],
            api_name="image_to_text",
        )  # fmt: skip
    return demo


def launch(checkpoint: str | Path, index: str | Path, dataset: str | Path, host: str = "127.0.0.1", port: int = 7860, **kwargs: Any) -> Any:
    """Load everything, then serve (blocking unless ``prevent_thread_lock=True`` is passed)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    service = RetrievalService(checkpoint, index, dataset)
    demo = build_demo(service)
    demo.queue(default_concurrency_limit=4)
    demo.launch(
        server_name=host, server_port=port, max_file_size=f"{MAX_UPLOAD_MB}mb", theme=gr.themes.Soft(), css=CSS,
        show_error=True, **kwargs,
    )  # fmt: skip
    return demo


def main(argv: Sequence[str] | None = None) -> int:
    """`python space_app/app.py [--checkpoint ...]`: the Space's entry point (same options as `geomeld serve`)."""
    import argparse

    from space_app import cli

    parser = argparse.ArgumentParser(prog="space_app/app.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    args = parser.parse_args(["serve", *(argv if argv is not None else sys.argv[1:])])
    if os.environ.get("SPACE_ID") and args.host == "127.0.0.1":
        args.host = "0.0.0.0"  # inside a Hugging Face Space the proxy reaches the app on all interfaces
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
