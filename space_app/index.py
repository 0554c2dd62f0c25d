"""A FAISS vector index over L2-normalised GeoMeld embeddings, with tile ids, metadata and filters.

GeoMeld's image and text embeddings are L2-normalised, so cosine similarity is the inner product and every
index here uses ``METRIC_INNER_PRODUCT``. Which FAISS index backs a collection is chosen once, when it is
created, from the expected collection size and a memory budget (``choose_kind``). Measured on 2 shared
cores, 256-d clustered vectors (benchmarks/bench_index.py, results in benchmarks/results/):

- ``flat`` (``IndexFlatIP``): exact, up to ``EXACT_MAX_VECTORS`` (20k) if it fits the budget. A single
  query scans every vector: ~1 ms at 10k, ~12 ms at 30k, ~57 ms at 100k and 540-740 ms p50 at 2.5M (two
  runs), where 2.5M x 256 float32 is also 2.56 GB, over the 2 GB budget on its own.
- Above that, IVF with a scalar quantiser, the most accurate encoding whose estimated build-time memory
  (``estimate_bytes``) fits the budget, in ``APPROXIMATE_PREFERENCE`` order:
  ``ivf_fp16`` (512 bytes/vector at 256-d; recall@10 0.999 at 2.5M) then ``ivf_sq8`` (256 bytes/vector;
  recall@10 0.971 at 2.5M, the loss being all quantisation: it did not move from nprobe 16 to 128). At
  2.5M x 256 under 2 GB that is ``ivf_sq8``: fp16 measured 2.45 GB of RSS growth while appending, SQ8
  1.55 GB (664 MB index + id mapping + allocator slack), p50 1.4 ms, p99 5.8 ms, built in 213 s.
  ``nlist`` ~ 4 sqrt(N) rounded down to a power of two (4096 at 1M-4M; FAISS's guidance is 4-16 sqrt(N)),
  k-means on at most 40 * nlist vectors of the first batch. ``nprobe`` 32: recall had already saturated at
  16 on the benchmark, 32 leaves headroom for less clustered real embeddings at ~1-2 ms p50. Later ``add``
  calls only encode and append: the centroids never move, so adding never rebuilds.
- ``ivf_pq`` (``IndexIVFPQ``): only when neither SQ encoding fits the budget. At 200k x 256, PQ with 64
  bytes/vector reached recall@10 0.60 where SQ8 reached 0.96, so it is the fallback, never the default.
- ``hnsw_sq8`` (``IndexHNSWSQ``, M=32): never chosen automatically, available by name. Building it took
  ~14x longer than IVF-SQ8 at 200k (106 s vs 7.7 s on 2 cores) for the same ~0.4 ms p50, and its graph adds
  ~256 bytes per vector on top of the codes.

Search results map FAISS rows (0..N-1, assigned in insertion order, never reused) to the caller's tile ids
and metadata, which are stored beside the index as JSON lines (never pickle). Filters on a region bounding
box and a date range become a FAISS ``IDSelectorBitmap`` applied inside the search, so a filtered query
returns the best matching rows rather than the best rows that happened to survive a post-filter.

Searches may run concurrently (each builds its own FAISS parameters); ``add`` must not run alongside them.
FAISS's thread count is process-wide (``omp_set_num_threads``); ``num_threads`` sets it for the process.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np

INDEX_FILE = "index.faiss"
MAPPING_FILE = "mapping.jsonl"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1

KINDS = ("flat", "ivf_fp16", "ivf_sq8", "ivf_pq", "hnsw_sq8")
# Up to this size exact single-query search stays under ~10 ms on 2 cores (see module docstring).
EXACT_MAX_VECTORS = 20_000
DEFAULT_MEMORY_BUDGET_BYTES = 2 * 1024**3
# nprobe 32 of nlist 4096 scans ~0.8% of the collection; recall saturated from 16 on (module docstring).
DEFAULT_NPROBE = 32
# FAISS warns below 39 training points per centroid; 40 keeps 4096-list training near a minute on 2 cores.
TRAIN_POINTS_PER_CENTROID = 40
# PQ's 8-bit sub-quantisers have 256 centroids each, so they need 39 * 256 points whatever nlist is.
PQ_MIN_TRAIN_POINTS = 40 * 256
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 64
# Unit-norm tolerance: float32 model outputs are normalised to ~1e-6; 1e-3 only catches real mistakes.
NORM_TOLERANCE = 1e-3
_IVF_KINDS = ("ivf_fp16", "ivf_sq8", "ivf_pq")
# Most accurate first; the first whose estimate fits the memory budget wins, then PQ as the last resort.
APPROXIMATE_PREFERENCE = ("ivf_fp16", "ivf_sq8")
_SQ_TYPES = {"ivf_fp16": faiss.ScalarQuantizer.QT_fp16, "ivf_sq8": faiss.ScalarQuantizer.QT_8bit}
# The id mapping in memory: a Python str per tile id, a dict entry and an int per row, None metadata,
# lon/lat/date arrays. Measured by the benchmark's RSS growth, rounded up.
MAPPING_BYTES_PER_ROW = 250
# Building by appending costs more than the index's size: FAISS grows each inverted list (and a flat index's
# code array) by std::vector doubling, and the blocks freed on the way fragment the heap. Appending 2.5M
# x 256 vectors grew RSS by 2448 MB for a 1304 MB fp16 index and by 1553 MB for a 664 MB SQ8 one, each
# with ~0.4 GB of mapping: ~1.6x the index. malloc_trim gave back only ~15% of it (500k test).
BUILD_GROWTH = 1.6


@dataclass(frozen=True)
class SearchFilter:
    """Metadata constraints for a search; rows without the needed metadata never match an active filter.

    bbox: ``(min_lon, min_lat, max_lon, max_lat)`` in degrees, inclusive, against metadata ``lon``/``lat``.
    date_range: ``(start, end)`` inclusive, against metadata ``date`` (or ``datetime``), ISO strings or dates.
    countries: ISO 3166 alpha-2 codes (any of them), against metadata ``country_code``; case-insensitive.
    """

    bbox: tuple[float, float, float, float] | None = None
    date_range: tuple[str | date, str | date] | None = None
    countries: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.bbox is not None:
            if len(self.bbox) != 4:
                raise ValueError(f"bbox must be (min_lon, min_lat, max_lon, max_lat), found {self.bbox!r}")
            min_lon, min_lat, max_lon, max_lat = self.bbox
            if min_lon > max_lon or min_lat > max_lat:
                raise ValueError(f"bbox must have min <= max on both axes, found {self.bbox!r}")
        if self.date_range is not None:
            if len(self.date_range) != 2:
                raise ValueError(f"date_range must be (start, end), found {self.date_range!r}")
            start, end = (_to_day(v) for v in self.date_range)
            if np.isnat(start) or np.isnat(end) or start > end:
                raise ValueError(f"date_range must be two dates with start <= end, found {self.date_range!r}")
        if self.countries is not None:
            if isinstance(self.countries, str) or not all(isinstance(c, str) and c for c in self.countries):
                raise ValueError(f"countries must be a sequence of country codes, found {self.countries!r}")
            object.__setattr__(self, "countries", tuple(c.upper() for c in self.countries))

    @property
    def active(self) -> bool:
        return self.bbox is not None or self.date_range is not None or bool(self.countries)


@dataclass
class SearchResult:
    """Top-k hits per query, best first.

    rows: (num_queries, k) int64 FAISS rows, -1 where fewer than k rows matched (filters, IVF probing).
    scores: (num_queries, k) float32 cosine similarities, -inf where ``rows`` is -1.
    ids, metadata: per query, the tile ids and metadata of the valid hits only (ragged, length <= k).
    """

    rows: np.ndarray
    scores: np.ndarray
    ids: list[list[str]] = field(default_factory=list)
    metadata: list[list[dict[str, Any]]] = field(default_factory=list)


def estimate_bytes(kind: str, n: int, dim: int, nlist: int = 0, pq_m: int = 0) -> int:
    """Approximate resident size of an EmbeddingIndex (FAISS index + id mapping), checked against the budget
    before anything is built."""
    faiss_bytes = _faiss_bytes(kind, n, dim, nlist, pq_m)
    return int(BUILD_GROWTH * faiss_bytes) + MAPPING_BYTES_PER_ROW * n


def _faiss_bytes(kind: str, n: int, dim: int, nlist: int, pq_m: int) -> int:
    ivf_overhead = 8 * n + 4 * dim * nlist  # an int64 id per vector + the coarse centroids
    if kind == "flat":
        return 4 * dim * n
    if kind == "ivf_fp16":
        return 2 * dim * n + ivf_overhead
    if kind == "ivf_sq8":
        return dim * n + ivf_overhead
    if kind == "ivf_pq":
        return pq_m * n + ivf_overhead + 4 * dim * 256
    if kind == "hnsw_sq8":
        return dim * n + 2 * HNSW_M * 4 * n
    raise ValueError(f"kind must be one of {KINDS}, found {kind!r}")


def default_nlist(n: int) -> int:
    """~4 sqrt(n) rounded down to a power of two, clamped to [16, 65536]."""
    target = max(16, int(4 * math.sqrt(max(n, 1))))
    return int(min(65536, 2 ** int(math.log2(target))))


def _pq_m_for_budget(n: int, dim: int, nlist: int, budget: int) -> int:
    """Largest PQ sub-quantiser count (dividing dim, 8-bit codes) that fits the budget; 0 if none does."""
    for m in (64, 32, 16, 8, 4):
        if dim % m == 0 and estimate_bytes("ivf_pq", n, dim, nlist, m) <= budget:
            return m
    return 0


def choose_kind(n: int, dim: int, memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES) -> dict[str, Any]:
    """Pick the index kind and its parameters for an expected collection of ``n`` vectors of width ``dim``."""
    if n <= EXACT_MAX_VECTORS and estimate_bytes("flat", n, dim) <= memory_budget_bytes:
        return {"kind": "flat"}
    nlist = default_nlist(n)
    for kind in APPROXIMATE_PREFERENCE:
        if estimate_bytes(kind, n, dim, nlist) <= memory_budget_bytes:
            return {"kind": kind, "nlist": nlist, "nprobe": DEFAULT_NPROBE}
    pq_m = _pq_m_for_budget(n, dim, nlist, memory_budget_bytes)
    if pq_m:
        return {"kind": "ivf_pq", "nlist": nlist, "nprobe": DEFAULT_NPROBE, "pq_m": pq_m}
    smallest = estimate_bytes("ivf_pq", n, dim, nlist, 4)
    raise ValueError(
        f"no index kind fits memory_budget_bytes={memory_budget_bytes} for {n} x {dim} vectors; "
        f"the smallest (ivf_pq, 4 bytes/vector) needs about {smallest}"
    )


def _to_day(value: Any) -> np.datetime64:
    """ISO string / date / datetime -> day precision; anything missing or unparsable -> NaT."""
    if value is None:
        return np.datetime64("NaT", "D")
    if isinstance(value, datetime):
        value = value.date()
    try:
        return np.datetime64(str(value)[:10], "D")
    except ValueError:
        return np.datetime64("NaT", "D")


def _residual(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata ``EmbeddingIndex.metadata_of`` cannot rebuild from its filter arrays: a real-number
    ``lat``/``lon``, an upper-case ``country_code`` and a ``YYYY-MM-DD`` ``date`` live only in the arrays."""
    out = {}
    for key, value in metadata.items():
        if key in ("lat", "lon") and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            continue
        if key == "country_code" and isinstance(value, str) and value and value == value.upper():
            continue
        if key == "date" and isinstance(value, str) and len(value) == 10 and not np.isnat(_to_day(value)):
            continue
        out[key] = value
    return out


def _float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


class EmbeddingIndex:
    """Append-only cosine-similarity index: FAISS vectors + tile ids + metadata, saved as one folder.

    Create with ``EmbeddingIndex(dim, expected_size=...)`` (kind chosen by ``choose_kind``) or name
    ``kind=`` explicitly. Inputs must already be L2-normalised (GeoMeld's heads normalise); an input that is
    not raises ``ValueError`` because it usually means the wrong tensor was embedded, unless ``normalize=True``
    is passed to ``add``/``search`` to normalise it instead.
    """

    def __init__(
        self,
        dim: int,
        expected_size: int | None = None,
        *,
        kind: str = "auto",
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
        nlist: int | None = None,
        nprobe: int | None = None,
        pq_m: int | None = None,
        num_threads: int | None = None,
        seed: int = 0,
    ) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be a positive integer, found {dim}")
        if kind != "auto" and kind not in KINDS:
            raise ValueError(f"kind must be 'auto' or one of {KINDS}, found {kind!r}")
        if num_threads is not None:
            set_num_threads(num_threads)
        self.dim = dim
        self.seed = seed
        if kind == "auto":
            if expected_size is None:
                raise ValueError(
                    "kind='auto' needs expected_size (the collection size the index is built for)"
                )
            params = choose_kind(expected_size, dim, memory_budget_bytes)
        else:
            params = {"kind": kind}
            if kind in _IVF_KINDS:
                params.update(nlist=default_nlist(expected_size or 0), nprobe=DEFAULT_NPROBE)
            if kind == "ivf_pq":
                # An explicit kind is the caller's call even over budget; then fall back to 8 bytes/vector.
                fitting = _pq_m_for_budget(expected_size or 0, dim, params["nlist"], memory_budget_bytes)
                params["pq_m"] = fitting or 8
            if kind == "hnsw_sq8":
                params.update(M=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION, ef_search=HNSW_EF_SEARCH)
        for name, value in (("nlist", nlist), ("nprobe", nprobe), ("pq_m", pq_m)):
            if value is not None:
                if value <= 0:
                    raise ValueError(f"{name} must be positive, found {value}")
                params[name] = value
        if params["kind"] == "ivf_pq" and dim % params["pq_m"]:
            raise ValueError(f"pq_m must divide dim={dim}, found {params['pq_m']}")
        self.params: dict[str, Any] = params
        self.index: faiss.Index = self._new_faiss_index()
        self._ids: list[str] = []
        self._row_of: dict[str, int] = {}
        self._metadata: list[dict[str, Any] | None] = []
        self._lon = np.empty(0, dtype=np.float64)
        self._lat = np.empty(0, dtype=np.float64)
        self._day = np.empty(0, dtype="datetime64[D]")
        # country per row as a small integer code into _country_names (0 = unknown): 2 bytes a row, not a str
        self._country = np.empty(0, dtype=np.uint16)
        self._country_names: list[str] = [""]

    # ----------------------------------------------------------------------------------------- construction
    @property
    def kind(self) -> str:
        return str(self.params["kind"])

    def __contains__(self, tile_id: object) -> bool:
        return tile_id in self._row_of

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def _new_faiss_index(self) -> faiss.Index:
        p, ip = self.params, faiss.METRIC_INNER_PRODUCT
        if p["kind"] == "flat":
            return faiss.IndexFlatIP(self.dim)
        if p["kind"] == "hnsw_sq8":
            index = faiss.IndexHNSWSQ(self.dim, faiss.ScalarQuantizer.QT_8bit, p["M"], ip)
            index.hnsw.efConstruction = p["ef_construction"]
            index.hnsw.efSearch = p["ef_search"]
            return index
        quantizer = faiss.IndexFlatIP(self.dim)
        if p["kind"] in _SQ_TYPES:
            index = faiss.IndexIVFScalarQuantizer(quantizer, self.dim, p["nlist"], _SQ_TYPES[p["kind"]], ip)
        else:
            index = faiss.IndexIVFPQ(quantizer, self.dim, p["nlist"], p["pq_m"], 8, ip)
        # The IVF index owns its quantiser; keep Python from freeing it under FAISS.
        index.own_fields = True
        quantizer.this.disown()
        index.nprobe = p["nprobe"]
        return index

    def _train(self, vectors: np.ndarray) -> None:
        """Train once on (a sample of) the first batch; later batches are only encoded and appended."""
        needed = self.params.get("nlist", 1) if self.kind in _IVF_KINDS else 1
        if len(vectors) < needed:
            raise ValueError(
                f"the first add() to a {self.kind} index trains it and needs at least nlist={needed} vectors, "
                f"found {len(vectors)}; add a larger first batch or pass a smaller nlist"
            )
        if self.kind in _IVF_KINDS:
            self.index.cp.seed = self.seed
            self.index.cp.niter = 10
            cap = TRAIN_POINTS_PER_CENTROID * needed
            if self.kind == "ivf_pq":
                cap = max(cap, PQ_MIN_TRAIN_POINTS)
            if len(vectors) > cap:
                rng = np.random.default_rng(self.seed)
                vectors = vectors[np.sort(rng.choice(len(vectors), cap, replace=False))]
        self.index.train(vectors)

    # ------------------------------------------------------------------------------------------ validation
    def _check_vectors(self, vectors: np.ndarray, what: str, normalize: bool) -> np.ndarray:
        array = np.asarray(vectors)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise ValueError(f"{what} must have shape (n, {self.dim}), found {np.shape(vectors)}")
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"{what} must be floating point, found dtype {array.dtype}")
        array = np.ascontiguousarray(array, dtype=np.float32)
        if not np.isfinite(array).all():
            raise ValueError(f"{what} must be finite, found NaN or inf")
        norms = np.linalg.norm(array, axis=1)
        if (norms == 0).any():
            raise ValueError(f"{what} contains an all-zero vector, which has no direction to normalise")
        off = np.abs(norms - 1.0) > NORM_TOLERANCE
        if off.any():
            if not normalize:
                worst = int(np.argmax(np.abs(norms - 1.0)))
                raise ValueError(
                    f"{what} must be L2-normalised (norm 1 +- {NORM_TOLERANCE}), found norm {norms[worst]:.6g} "
                    f"at row {worst}; pass normalize=True to normalise instead"
                )
            array = array / norms[:, None]
        return array

    # ------------------------------------------------------------------------------------------------ add
    def add(
        self,
        embeddings: np.ndarray,
        ids: Sequence[str],
        metadata: Sequence[Mapping[str, Any]] | None = None,
        *,
        normalize: bool = False,
    ) -> np.ndarray:
        """Append vectors with their tile ids (unique) and metadata; returns their FAISS rows.

        Never rebuilds: an untrained IVF / HNSW-SQ index is trained on this first batch, and every later
        call only encodes and appends, so rows and centroids from earlier calls stay as they were.
        """
        vectors = self._check_vectors(embeddings, "embeddings", normalize)
        ids = [str(i) for i in ids]
        if len(ids) != len(vectors):
            raise ValueError(f"ids must have one entry per embedding ({len(vectors)}), found {len(ids)}")
        rows_meta: list[dict[str, Any]] = [{} for _ in ids] if metadata is None else [dict(m) for m in metadata]
        if len(rows_meta) != len(vectors):
            raise ValueError(
                f"metadata must have one entry per embedding ({len(vectors)}), found {len(rows_meta)}"
            )
        if len(set(ids)) != len(ids):
            raise ValueError("ids must be unique within a batch, found duplicates")
        clashes = [i for i in ids if i in self._row_of]
        if clashes:
            raise ValueError(
                f"ids must be new to the index, found {len(clashes)} already present (e.g. {clashes[0]!r})"
            )
        if not self.is_trained:
            self._train(vectors)
        start = len(self)
        self.index.add(vectors)
        self._append_mapping(ids, rows_meta)
        return np.arange(start, start + len(ids), dtype=np.int64)

    def _append_mapping(self, ids: list[str], metadata: list[dict[str, Any]]) -> None:
        start = len(self._ids)
        self._ids.extend(ids)
        self._row_of.update((tile_id, start + k) for k, tile_id in enumerate(ids))
        # What the filter arrays below hold exactly is not kept again in the row's dict, and an empty dict is
        # stored as None: a dict of a few keys costs ~0.5-1 KB a row in CPython, 1-2.5 GB at 2.5M rows.
        self._metadata.extend(_residual(m) or None for m in metadata)
        self._lon = np.concatenate([self._lon, [_float_or_nan(m.get("lon")) for m in metadata]])
        self._lat = np.concatenate([self._lat, [_float_or_nan(m.get("lat")) for m in metadata]])
        days = np.array([_to_day(m.get("date", m.get("datetime"))) for m in metadata], dtype="datetime64[D]")
        self._day = np.concatenate([self._day, days])
        code_of = {name: i for i, name in enumerate(self._country_names)}
        codes = []
        for m in metadata:
            name = str(m.get("country_code") or "").upper()
            if name not in code_of:
                code_of[name] = len(self._country_names)
                self._country_names.append(name)
            codes.append(code_of[name])
        self._country = np.concatenate([self._country, np.asarray(codes, dtype=np.uint16)])

    # --------------------------------------------------------------------------------------------- search
    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        filter: SearchFilter | None = None,
        *,
        normalize: bool = False,
        nprobe: int | None = None,
    ) -> SearchResult:
        """Top-``k`` rows by cosine similarity for each query, optionally restricted by ``filter``.

        A filter becomes an ``IDSelectorBitmap`` inside FAISS. For IVF, probing ``nprobe`` lists of a
        filtered collection would leave too few candidates, so nprobe is scaled by 1 / (fraction of rows
        that pass), capped at nlist. ``nprobe`` overrides the IVF default for this call (ignored otherwise). Queries with fewer than ``k`` matching rows get -1 rows (see SearchResult).
        """
        if len(self) == 0:
            raise ValueError("the index is empty: add() embeddings before searching")
        if not 1 <= k <= len(self):
            raise ValueError(f"k must be between 1 and the collection size {len(self)}, found {k}")
        vectors = self._check_vectors(queries, "queries", normalize)
        allowed = self._allowed_rows(filter) if filter is not None and filter.active else None
        if allowed is not None and not allowed.any():
            rows = np.full((len(vectors), k), -1, dtype=np.int64)
            return self._result(np.full((len(vectors), k), -np.inf, dtype=np.float32), rows)
        # `keepalive` holds the bitmap FAISS reads through a raw pointer until the search returns; it is
        # local so that concurrent searches (the Space serves many clients) never share it.
        params, keepalive = self._search_params(allowed, nprobe)
        if params is None:
            scores, rows = self.index.search(vectors, k)
        else:
            scores, rows = self.index.search(vectors, k, params=params)
        del keepalive
        scores = np.where(rows < 0, -np.inf, scores).astype(np.float32)
        return self._result(scores, rows.astype(np.int64))

    def _search_params(
        self, allowed: np.ndarray | None, nprobe: int | None
    ) -> tuple[faiss.SearchParameters | None, tuple[Any, ...]]:
        """FAISS per-call search parameters, plus the objects that must outlive the call."""
        selector, bitmap = None, None
        if allowed is not None:
            bitmap = np.packbits(allowed, bitorder="little")  # bit r (little-endian) <-> row r
            selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        if self.kind in _IVF_KINDS:
            probes = nprobe or self.params["nprobe"]
            if allowed is not None:
                probes = math.ceil(probes * len(allowed) / max(int(allowed.sum()), 1))
            params = faiss.SearchParametersIVF(nprobe=min(probes, self.params["nlist"]))
        elif self.kind == "hnsw_sq8":
            params = faiss.SearchParametersHNSW(efSearch=self.params["ef_search"])
        elif selector is None:
            return None, ()
        else:
            params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector
        return params, (selector, bitmap)

    def _allowed_rows(self, flt: SearchFilter) -> np.ndarray:
        """Boolean mask over rows; NaN coordinates and NaT dates compare False, so they never match."""
        allowed = np.ones(len(self), dtype=bool)
        if flt.bbox is not None:
            min_lon, min_lat, max_lon, max_lat = flt.bbox
            with np.errstate(invalid="ignore"):
                allowed &= (self._lon >= min_lon) & (self._lon <= max_lon)
                allowed &= (self._lat >= min_lat) & (self._lat <= max_lat)
        if flt.date_range is not None:
            start, end = (_to_day(v) for v in flt.date_range)
            allowed &= ~np.isnat(self._day) & (self._day >= start) & (self._day <= end)
        if flt.countries:
            wanted = [i for i, name in enumerate(self._country_names) if name and name in flt.countries]
            allowed &= np.isin(self._country, wanted)
        return allowed

    def _result(self, scores: np.ndarray, rows: np.ndarray) -> SearchResult:
        ids = [[self._ids[r] for r in row if r >= 0] for row in rows]
        metadata = [[self.metadata_of(r) for r in row if r >= 0] for row in rows]
        return SearchResult(rows=rows, scores=scores, ids=ids, metadata=metadata)

    # ---------------------------------------------------------------------------------------- accessors
    def row_of(self, tile_id: str) -> int:
        if tile_id not in self._row_of:
            raise KeyError(f"tile id {tile_id!r} is not in the index")
        return self._row_of[tile_id]

    def id_of(self, row: int) -> str:
        return self._ids[row]

    def countries(self) -> list[str]:
        """The distinct country codes in the metadata, sorted (what a region filter can offer)."""
        present = np.unique(self._country)
        return sorted(self._country_names[i] for i in present.tolist() if self._country_names[i])

    def metadata_of(self, row: int) -> dict[str, Any]:
        """A copy of the row's metadata, so callers cannot change what the index filters on."""
        out: dict[str, Any] = {}
        if not np.isnan(self._lat[row]):
            out["lat"] = float(self._lat[row])
        if not np.isnan(self._lon[row]):
            out["lon"] = float(self._lon[row])
        if self._country[row]:
            out["country_code"] = self._country_names[self._country[row]]
        extra = self._metadata[row] or {}
        if "date" not in extra and "datetime" not in extra and not np.isnat(self._day[row]):
            out["date"] = str(self._day[row])
        out.update(extra)
        return out

    # -------------------------------------------------------------------------------------- persistence
    def manifest(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "params": self.params,
            "dim": self.dim,
            "count": len(self),
            "metric": "inner_product",
            "normalization": "l2",
            "seed": self.seed,
            "faiss_version": faiss.__version__,
            "files": {"index": INDEX_FILE, "mapping": MAPPING_FILE},
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``index.faiss``, ``mapping.jsonl`` (one ``{"row", "id", "metadata"}`` per row) and ``manifest.json``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(out / INDEX_FILE))
        with open(out / MAPPING_FILE, "w", encoding="utf-8") as fh:
            for row, tile_id in enumerate(self._ids):
                record = {"row": row, "id": tile_id, "metadata": self.metadata_of(row)}
                fh.write(json.dumps(record, default=str) + "\n")
        (out / MANIFEST_FILE).write_text(json.dumps(self.manifest(), indent=2) + "\n", encoding="utf-8")
        return out

    @classmethod
    def load(cls, directory: str | Path, *, num_threads: int | None = None) -> EmbeddingIndex:
        """Read a folder written by ``save``; the manifest, index and mapping must agree on dim and count."""
        src = Path(directory)
        manifest_path = src / MANIFEST_FILE
        if not manifest_path.is_file():
            raise FileNotFoundError(f"no {MANIFEST_FILE} in {src}: not an EmbeddingIndex folder")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"manifest format_version must be {FORMAT_VERSION}, found {manifest.get('format_version')!r}"
            )
        self = cls.__new__(cls)
        if num_threads is not None:
            set_num_threads(num_threads)
        self.dim = int(manifest["dim"])
        self.seed = int(manifest.get("seed", 0))
        self.params = dict(manifest["params"])
        self.index = faiss.read_index(str(src / INDEX_FILE))
        if self.index.d != self.dim or self.index.ntotal != manifest["count"]:
            raise ValueError(
                f"index file must hold {manifest['count']} x {self.dim} vectors as the manifest says, "
                f"found {self.index.ntotal} x {self.index.d}"
            )
        if self.kind in _IVF_KINDS:
            faiss.extract_index_ivf(self.index).nprobe = self.params["nprobe"]
        self._ids, self._row_of, self._metadata = [], {}, []
        self._lon = np.empty(0, dtype=np.float64)
        self._lat = np.empty(0, dtype=np.float64)
        self._day = np.empty(0, dtype="datetime64[D]")
        # country per row as a small integer code into _country_names (0 = unknown): 2 bytes a row, not a str
        self._country = np.empty(0, dtype=np.uint16)
        self._country_names = [""]
        ids, metadata = _read_mapping(src / MAPPING_FILE)
        if len(ids) != self.index.ntotal:
            raise ValueError(f"{MAPPING_FILE} must have {self.index.ntotal} rows, found {len(ids)}")
        self._append_mapping(ids, metadata)
        return self


def _read_mapping(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    ids: list[str] = []
    metadata: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh):
            record = json.loads(line)
            if record["row"] != line_no:
                raise ValueError(
                    f"{path.name} line {line_no + 1} must hold row {line_no}, found {record['row']}"
                )
            ids.append(str(record["id"]))
            metadata.append(dict(record.get("metadata") or {}))
    return ids, metadata


def set_num_threads(num_threads: int) -> None:
    """Set FAISS's OpenMP thread count for the whole process (FAISS has no per-index setting)."""
    if num_threads <= 0:
        raise ValueError(f"num_threads must be positive, found {num_threads}")
    faiss.omp_set_num_threads(num_threads)


def l2_normalize(vectors: Iterable[Any] | np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation to float32, for callers that hold raw (unnormalised) embeddings."""
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("cannot normalise an all-zero vector")
    return array / norms
