"""Grounded captions for GeoMeld samples: the spec's agentic framework (section 2) as four small roles.

* :mod:`.orchestrator` turns a sample's signals and metadata into a :class:`FactSheet` of typed facts;
* :mod:`.captioners` propose candidates (template grammar, local causal LM, OpenAI-compatible endpoint);
* :mod:`.verifier` extracts checkable claims and checks each against the facts, with documented tolerances;
* :mod:`.evaluator` ranks candidates by image-text similarity (a GeoMeld checkpoint) or fact coverage;
* :mod:`.pipeline` runs them for one sample; :mod:`.cli` adds ``geomeld caption`` / ``verify-caption``.

Signals follow the schema of :func:`dataset_scripts.signals.compute_signals`: ``spectral`` (NDVI mean,
p10, p90, NDWI, MNDWI, NDBI, NDSI means), ``worldcover_fractions`` / ``dynamic_world_fractions``
(registry class name -> fraction 0..1, or None), ``water`` (detected, percentage 0..100, source),
``terrain`` (elevation min/mean/max, relief, slope_mean, terrain_class, geomorphon_fractions, or None),
``canopy`` (height_mean, height_p90, cover_fraction, or None), ``sar`` (vv/vh means and difference in dB,
vv_std_db, water_fraction, or None), ``spectral_cover`` (snow, water, vegetation, bare, built, other,
valid_fraction, or None), ``notes`` (why a group is missing), ``snow_fraction`` and ``cloud_fraction`` (0..1 or None), ``place`` (country, country_code,
region, nearest_place, distance_km) and ``date`` (datetime, month, season, offsets). Sample metadata adds
the release's ``osm_tags`` (:mod:`.osm`), ``terrain_class`` and ``water_detected`` / ``water_percentage``.
"""

from .captioners import Candidate, HFCaptioner, OpenAICaptioner, TemplateCaptioner, make_captioner
from .evaluator import Evaluator, GeoMeldSimilarity, coverage_score
from .orchestrator import Fact, FactSheet, WaterLayout, build_fact_sheet, water_layout
from .pipeline import CaptionResult, caption_aligned_sample, caption_sample
from .verifier import Claim, Verification, Verifier, verify_caption

__all__ = [
    "Candidate", "CaptionResult", "Claim", "Evaluator", "Fact", "FactSheet", "GeoMeldSimilarity", "HFCaptioner",
    "OpenAICaptioner", "TemplateCaptioner", "Verification", "Verifier", "WaterLayout", "build_fact_sheet",
    "caption_aligned_sample", "caption_sample", "coverage_score", "make_captioner", "verify_caption", "water_layout",
]  # fmt: skip
