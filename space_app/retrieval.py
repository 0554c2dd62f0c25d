"""Embedding a built GeoMeld dataset with GeoMeld-FM: the retrieval index, its evaluation, and query helpers.

The index folder that ``geomeld index`` writes (and the Space reads)::

    INDEX/
      index.json       what was embedded with what: checkpoint and its weights' SHA-256, dataset folder,
                       embedding width, input modalities, counts
      images/          an ``EmbeddingIndex`` of image embeddings, one row per sample, id = tile id
      texts/           an ``EmbeddingIndex`` of caption embeddings, one row per captioned sample, id = tile id

Every row's metadata carries ``lat``, ``lon``, ``date`` and ``country_code``, so the Space filters by region
and date inside FAISS (``SearchFilter``); these live in the index's filter arrays, not in per-row dicts (which
would cost ~1 KB a row). Captions, places and splits stay in the dataset, read by tile id for the hits shown. Indexing an existing folder again with the
same checkpoint embeds only tile ids it does not hold yet and appends them (``EmbeddingIndex.add`` never
retrains); a different checkpoint is refused, because its vectors would not be comparable.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .index import EmbeddingIndex, SearchFilter

INDEX_INFO = "index.json"
IMAGES, TEXTS = "images", "texts"
INFO_VERSION = 1
#: the modality subsets a query may name, by the registry's base names
SUBSETS = {"all": None, "sentinel2": ("sentinel2",), "sentinel1": ("sentinel1",)}


def weights_digest(checkpoint: str | Path) -> str:
    """SHA-256 of the checkpoint's safetensors weights: what makes two embedding runs comparable."""
    files = sorted(Path(checkpoint).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(
            f"expected model weights (*.safetensors) in {checkpoint}, found none; pass the folder that "
            "`geomeld pretrain` or `save_pretrained` wrote"
        )
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as fh:
            while block := fh.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()


class Embedder:
    """GeoMeld-FM's two towers behind numpy in, unit vectors out.

    ``embed_samples`` takes collator samples (``row_to_sample`` of dataset rows, or an aligned upload);
    ``modalities`` restricts the image side to a subset of the model's inputs (e.g. S1 only), which the
    encoder's validity-weighted fusion allows; asking for a modality the model does not take is an error.
    """

    def __init__(self, checkpoint: str | Path, num_threads: int | None = None):
        import torch

        from modeling_geomeld import GeoMeldModel, GeoMeldProcessor
        from modeling_geomeld.training.pretraining import PretrainingCollator

        if num_threads:
            torch.set_num_threads(num_threads)
        self.checkpoint = Path(checkpoint)
        self.model = GeoMeldModel.from_pretrained(self.checkpoint).eval()
        self.processor = GeoMeldProcessor.from_pretrained(self.checkpoint)
        # the whole upload or tile is embedded (padded to the patch multiple), deterministically, even with a
        # processor saved with a training crop
        self.processor.image_processor.crop_size = None
        self.processor.image_processor.crop_mode = "center"
        self.dim = int(self.model.config.projection_dim)
        self.input_modalities: list[str] = list(self.processor.image_processor.input_modalities)
        self.collator = PretrainingCollator(self.processor, use_captions=False, with_targets=False)

    def check_modalities(self, modalities: Sequence[str] | None) -> tuple[str, ...]:
        if not modalities:
            return tuple(self.input_modalities)
        unknown = [m for m in modalities if m not in self.input_modalities]
        if unknown:
            raise ValueError(
                f"this model takes {', '.join(self.input_modalities)} as input; it cannot embed {', '.join(unknown)}. "
                "Choose a subset of its inputs."
            )
        return tuple(modalities)

    def _batch(self, samples: Sequence[Mapping[str, Any]], modalities: Sequence[str] | None) -> dict[str, Any]:
        from modeling_geomeld.modalities import resolve

        keep = self.check_modalities(modalities)
        chosen = []
        for sample in samples:
            arrays = {k: v for k, v in sample["arrays"].items() if resolve(k)[0].name in keep}
            chosen.append({**sample, "arrays": arrays, "bands": {k: sample["bands"][k] for k in arrays}})
        return self.collator(chosen)

    def embed_samples(self, samples: Sequence[Mapping[str, Any]], modalities: Sequence[str] | None = None) -> np.ndarray:
        import torch

        batch = self._batch(samples, modalities)
        with torch.inference_mode():
            features = self.model.get_image_features(batch["pixel_values"], batch["valid_mask"])
        return _unit(features.float().numpy())

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        texts = [t.strip() for t in texts]
        if not texts or not all(texts):
            raise ValueError("expected non-empty query texts, found an empty one")
        tokens = self.processor(text=texts)
        with torch.inference_mode():
            features = self.model.get_text_features(
                tokens["input_ids"], tokens["attention_mask"], tokens.get("token_type_ids")
            )
        return _unit(features.float().numpy())


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


# ----------------------------------------------------------------------------------------------- dataset rows
def count_rows(dataset: str | Path) -> int:
    """Rows in the dataset's shards, from the Parquet footers (no data read)."""
    import pyarrow.parquet as pq

    from dataset_scripts.captions.dataset_io import shard_paths

    return sum(pq.ParquetFile(p).metadata.num_rows for p in shard_paths(dataset))


def iter_rows(dataset: str | Path, batch_size: int, split: str | None = None) -> Iterator[list[dict[str, Any]]]:
    """Batches of raw rows (dicts) straight from the shards, in shard order; ``split`` keeps one split.

    The split is an Arrow filter, so rows of other splits are never turned into Python objects (their raster
    bytes are what a row costs).
    """
    import pyarrow.dataset as pads

    from dataset_scripts.captions.dataset_io import shard_paths

    shards = pads.dataset([str(p) for p in shard_paths(dataset)], format="parquet")
    where = None if split is None else pads.field("split") == split
    for record_batch in shards.to_batches(filter=where, batch_size=batch_size):
        if record_batch.num_rows:
            yield record_batch.to_pylist()


def row_metadata(row: Mapping[str, Any]) -> dict[str, Any]:
    """What the index keeps per sample: the fields its filters use (region, bounding box, date).

    All of them live in the index's columnar filter arrays, so they cost no per-row dict; labels and
    captions are read back from the dataset by tile id for the hits shown (``SampleStore.summary``).
    """
    meta = {
        "lat": row.get("lat"),
        "lon": row.get("lon"),
        "date": (row.get("datetime") or "")[:10] or None,
        "country_code": row.get("country_code") or (place_of(row).get("country_code")),
    }
    return {k: v for k, v in meta.items() if v is not None}


def place_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The gazetteer entry the builder stored in the row's ``signals`` (country, region, nearest place)."""
    signals = row.get("signals")
    if isinstance(signals, str) and signals.strip().startswith("{"):
        return json.loads(signals).get("place") or {}
    return {}


# --------------------------------------------------------------------------------------------------- indexing
@dataclass
class IndexReport:
    images_added: int
    texts_added: int
    images_total: int
    texts_total: int
    skipped_existing: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _read_info(out: Path) -> dict[str, Any] | None:
    path = out / INDEX_INFO
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def load_retrieval_index(path: str | Path) -> tuple[EmbeddingIndex, EmbeddingIndex, dict[str, Any]]:
    """The image index, the caption index and ``index.json`` of a folder written by ``build_index``."""
    root = Path(path)
    info = _read_info(root)
    if info is None:
        raise FileNotFoundError(f"expected {INDEX_INFO} in {root} (a folder written by `geomeld index`), found none")
    return EmbeddingIndex.load(root / IMAGES), EmbeddingIndex.load(root / TEXTS), info


def _save_atomically(index: EmbeddingIndex, target: Path) -> None:
    """Write next to ``target`` then swap folders, so an interrupted save never leaves a half index."""
    tmp, old = target.with_name(f".{target.name}.tmp"), target.with_name(f".{target.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    index.save(tmp)
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def build_index(
    checkpoint: str | Path,
    dataset: str | Path,
    out: str | Path,
    *,
    batch_size: int = 32,
    modalities: Sequence[str] | None = None,
    kind: str = "auto",
    memory_budget_bytes: int | None = None,
    save_every: int = 200,
    progress: bool = True,
    embedder: Embedder | None = None,
) -> IndexReport:
    """Embed every sample (image side) and every caption (text side) of ``dataset`` into ``out``.

    An existing ``out`` made with the same checkpoint is extended with the rows it lacks; the indexes are
    saved every ``save_every`` batches and at the end, each save atomic, so a killed run loses at most those
    batches and a rerun picks up where it stopped.
    """
    import time

    from tqdm.auto import tqdm

    from modeling_geomeld.training.pretraining import row_to_sample

    started = time.perf_counter()
    out = Path(out)
    embedder = embedder or Embedder(checkpoint)
    digest = weights_digest(checkpoint)
    total = count_rows(dataset)
    info = _read_info(out)
    if info is not None:
        if info.get("weights_sha256") != digest:
            raise ValueError(
                f"{out} holds embeddings of another checkpoint ({info.get('checkpoint')}, weights "
                f"{str(info.get('weights_sha256'))[:12]}), found weights {digest[:12]} in {checkpoint}; vectors of two "
                "models are not comparable: index into a new folder"
            )
        images, texts, _ = load_retrieval_index(out)
    else:
        options: dict[str, Any] = {"kind": kind}
        if kind == "auto":
            options["expected_size"] = max(total, 1)
        if memory_budget_bytes:
            options["memory_budget_bytes"] = memory_budget_bytes
        images = EmbeddingIndex(embedder.dim, **options)
        texts = EmbeddingIndex(embedder.dim, **options)
    used = embedder.check_modalities(modalities)
    out.mkdir(parents=True, exist_ok=True)
    images_added = texts_added = skipped = 0

    def save() -> None:
        _save_atomically(images, out / IMAGES)
        _save_atomically(texts, out / TEXTS)
        record = {
            "version": INFO_VERSION,
            "checkpoint": str(Path(checkpoint).resolve()),
            "weights_sha256": digest,
            "dataset": str(Path(dataset).resolve()),
            "dim": embedder.dim,
            "input_modalities": list(used),
            "images": len(images),
            "texts": len(texts),
            "image_index": images.manifest(),
            "text_index": texts.manifest(),
        }
        tmp = out / f".{INDEX_INFO}.tmp"
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, out / INDEX_INFO)

    bar = tqdm(total=total, desc="embedding samples and captions", unit="sample", disable=not progress)
    for step, rows in enumerate(iter_rows(dataset, batch_size), start=1):
        bar.update(len(rows))
        fresh = [r for r in rows if r["tile_id"] not in images]
        skipped += len(rows) - len(fresh)
        if fresh:
            vectors = embedder.embed_samples([row_to_sample(r) for r in fresh], used)
            images.add(vectors, [r["tile_id"] for r in fresh], [row_metadata(r) for r in fresh])
            images_added += len(fresh)
        captioned = [r for r in rows if (r.get("caption") or "").strip() and r["tile_id"] not in texts]
        if captioned:
            vectors = embedder.embed_texts([r["caption"] for r in captioned])
            texts.add(vectors, [r["tile_id"] for r in captioned], [row_metadata(r) for r in captioned])
            texts_added += len(captioned)
        if save_every and step % save_every == 0:
            save()
    bar.close()
    if len(images) == 0:
        raise ValueError(f"expected samples in {dataset}, found none to embed")
    save()
    return IndexReport(images_added, texts_added, len(images), len(texts), skipped, time.perf_counter() - started)


# ------------------------------------------------------------------------------------------------- evaluation
def evaluate_retrieval(
    checkpoint: str | Path,
    dataset: str | Path,
    split: str | None = "test",
    *,
    batch_size: int = 32,
    modalities: Sequence[str] | None = None,
    ks: Sequence[int] = (1, 5, 10),
    progress: bool = True,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """R@K in both directions and mR on the captioned samples of one split (``None``: every split).

    Image ``i``'s positives are its own captions (one per sample today; the metric takes several); a query
    is a hit at K when any positive is among its K nearest by cosine similarity.
    """
    from tqdm.auto import tqdm

    from modeling_geomeld.evaluation import retrieval_recall
    from modeling_geomeld.training.pretraining import row_to_sample

    embedder = embedder or Embedder(checkpoint)
    image_vecs: list[np.ndarray] = []
    text_vecs: list[np.ndarray] = []
    positives: list[list[int]] = []
    bar = tqdm(desc=f"embedding split {split or 'all'}", unit="sample", disable=not progress)
    for rows in iter_rows(dataset, batch_size, split=split):
        rows = [r for r in rows if (r.get("caption") or "").strip()]
        if not rows:
            continue
        image_vecs.append(embedder.embed_samples([row_to_sample(r) for r in rows], modalities))
        start = sum(len(t) for t in text_vecs)
        text_vecs.append(embedder.embed_texts([r["caption"] for r in rows]))
        positives.extend([start + i] for i in range(len(rows)))
        bar.update(len(rows))
    bar.close()
    n = len(positives)
    if n < 2:
        raise ValueError(
            f"expected at least 2 captioned samples in split {split!r} of {dataset}, found {n}; "
            "caption the dataset (`geomeld caption`) or choose another split (--split)"
        )
    ks = [k for k in ks if k <= n] or [1]
    scores = retrieval_recall(
        positives=positives, image_embeddings=np.concatenate(image_vecs), text_embeddings=np.concatenate(text_vecs), ks=ks
    )
    return {
        "split": split or "all",
        "samples": n,
        "checkpoint": str(checkpoint),
        "dataset": str(dataset),
        "modalities": list(embedder.check_modalities(modalities)),
        "chance_R@1": 1.0 / n,
        **scores,
    }


def format_recall_table(result: Mapping[str, Any]) -> str:
    """The R@K numbers as a small text table, one line per direction, then mR."""
    ks = sorted({int(k.split("@")[1]) for k in result if "_R@" in k})
    head = f"{'direction':<15}" + "".join(f"{'R@' + str(k):>8}" for k in ks)
    lines = [head]
    for direction in ("image_to_text", "text_to_image"):
        lines.append(f"{direction:<15}" + "".join(f"{result[f'{direction}_R@{k}']:>8.3f}" for k in ks))
    lines.append(f"{'mR':<15}{result['mR']:>8.3f}   ({result['samples']} samples, chance R@1 {result['chance_R@1']:.3f})")
    return "\n".join(lines)


__all__ = [
    "SUBSETS",
    "Embedder",
    "IndexReport",
    "SearchFilter",
    "build_index",
    "count_rows",
    "evaluate_retrieval",
    "format_recall_table",
    "iter_rows",
    "load_retrieval_index",
    "row_metadata",
    "weights_digest",
]
