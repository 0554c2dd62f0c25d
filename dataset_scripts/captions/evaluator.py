"""Evaluator: rank candidate captions, by image-text similarity when a GeoMeld checkpoint is given, else by
how much of the fact sheet they cover.

Similarity goes through one small interface, a callable ``(image_embedding, texts) -> scores``, so any
model can rank: :class:`GeoMeldSimilarity` wraps anything with ``get_image_features`` /
``get_text_features`` plus a processor (``GeoMeldModel`` + ``GeoMeldProcessor``); the model is never
imported here, so this module loads without torch models being built.

Coverage (the fallback and the tie-breaker) is the salience-weighted share of the sheet's most salient
facts that the caption speaks about with a *supported* claim, minus 0.05 per unverifiable and 0.5 per
contradicted claim: a caption that names the tile's dominant cover, its water and its terrain beats one
that only names the country.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .lexicon import GROUPS
from .orchestrator import FactSheet
from .verifier import CONTRADICTED, SUPPORTED, UNVERIFIABLE, Verification

Similarity = Callable[[Any, Sequence[str]], Sequence[float]]
UNVERIFIABLE_PENALTY, CONTRADICTED_PENALTY = 0.05, 0.5
TOP_FACTS = 8


def fact_topic(name: str) -> str:
    """The topic a fact belongs to, matched against :attr:`Claim.topic` by the coverage score."""
    parts = name.split(".")
    if parts[0] == "cover" and parts[1] == "spectral":
        # the spectral classes: vegetation of any kind, and bare + built as one measured share
        return {"bare": "cover:unvegetated", "built": "cover:unvegetated"}.get(
            parts[-1], f"cover:{parts[-1]}"
        )
    if parts[0] == "cover":
        concept = parts[-1]
        group = next(
            (g for g, members in GROUPS.items() if concept in members and g != "vegetation"), concept
        )
        return f"cover:{group}"
    return {
        "water.percentage": "cover:water",
        "water.detected": "cover:water",
        "snow.percentage": "cover:snow",
        "sar.water_percentage": "cover:water",
        "water.coastal": "coast",
        "water.shoreline": "coast",
        "water.side": "coast",
    }.get(name) or {
        "terrain": "relief",
        "slope": "relief",
        "elevation": "elevation",
        "place": "place",
        "date": "date",
        "greenness": "greenness",
        "sar": "radar",
        "canopy": "canopy",
        "cloud": "cloud",
    }.get(parts[0], parts[0])


def coverage_score(sheet: FactSheet, verification: Verification, top: int = TOP_FACTS) -> float:
    """Salience-weighted share of the top facts a caption covers with supported claims, minus penalties."""
    salient = sheet.salient(top)
    total = sum(f.salience for f in salient)
    covered_topics = {c.topic for c in verification.claims if c.verdict == SUPPORTED}
    covered = sum(f.salience for f in salient if fact_topic(f.name) in covered_topics)
    penalty = sum(UNVERIFIABLE_PENALTY for c in verification.claims if c.verdict == UNVERIFIABLE)
    penalty += sum(CONTRADICTED_PENALTY for c in verification.claims if c.verdict == CONTRADICTED)
    return (covered / total if total > 0 else 0.0) - penalty


class GeoMeldSimilarity:
    """Cosine image-text similarity with a GeoMeld checkpoint (or any model with the same two methods).

    ``model`` needs ``get_image_features(pixel_values, valid_mask)`` and ``get_text_features(input_ids,
    attention_mask[, token_type_ids])``; ``processor`` is called as ``processor(images=..., band_names=...)``
    and ``processor(text=[...])``, like ``GeoMeldProcessor``.
    """

    def __init__(self, model: Any, processor: Any):
        for method in ("get_image_features", "get_text_features"):
            if not callable(getattr(model, method, None)):
                raise TypeError(
                    f"the similarity model needs a {method}() method; {type(model).__name__} has none"
                )
        if not callable(processor):
            raise TypeError(
                f"the processor must be callable (a GeoMeldProcessor), got {type(processor).__name__}"
            )
        self.model, self.processor = model, processor

    def embed_image(
        self, images: Mapping[str, Any], band_names: Mapping[str, Sequence[str]] | None = None
    ) -> Any:
        """One sample's arrays ``{modality: (C, H, W)}`` -> its normalised image embedding ``(P,)``."""
        import torch
        import torch.nn.functional as F

        from modeling_geomeld.modalities import resolve

        # a dataset row holds every layer; the model takes only its configured input modalities
        wanted = getattr(getattr(self.processor, "image_processor", None), "input_modalities", None)
        if wanted is not None:
            images = {k: v for k, v in images.items() if resolve(k)[0].name in wanted}
            band_names = {k: v for k, v in (band_names or {}).items() if k in images}
        if not images:
            raise ValueError(f"the sample has none of the model's input modalities {sorted(wanted or [])}")
        batch = self.processor(images=dict(images), band_names=dict(band_names or {}))
        with torch.no_grad():
            emb = self.model.get_image_features(batch["pixel_values"], batch.get("valid_mask"))
        return F.normalize(emb, dim=-1)[0]

    def __call__(self, image_embedding: Any, texts: Sequence[str]) -> list[float]:
        import torch
        import torch.nn.functional as F

        if not texts:
            return []
        tokens = self.processor(text=list(texts))
        kwargs = {k: tokens[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in tokens}
        with torch.no_grad():
            text_emb = F.normalize(self.model.get_text_features(**kwargs), dim=-1)
        image = F.normalize(torch.as_tensor(image_embedding, dtype=text_emb.dtype).reshape(1, -1), dim=-1)
        return (text_emb @ image.T).squeeze(1).tolist()


@dataclass
class Scores:
    """A candidate's scores: ``score`` ranks (similarity when available, else coverage)."""

    coverage: float
    similarity: float | None
    score: float

    def to_dict(self) -> dict[str, float | None]:
        return {"coverage": self.coverage, "similarity": self.similarity, "score": self.score}


class Evaluator:
    """Scores candidates; ``similarity`` is optional and used only when an image embedding is given."""

    def __init__(self, similarity: Similarity | None = None, top_facts: int = TOP_FACTS):
        self.similarity = similarity
        self.top_facts = top_facts

    def score(
        self, sheet: FactSheet, verifications: Sequence[Verification], image_embedding: Any = None
    ) -> list[Scores]:
        """Scores of each verified candidate, in order (texts scored are the verified, possibly repaired, ones)."""
        coverage = [coverage_score(sheet, v, self.top_facts) for v in verifications]
        if self.similarity is None or image_embedding is None or not verifications:
            return [Scores(c, None, c) for c in coverage]
        sims = [
            float(s) for s in self.similarity(image_embedding, [v.text or v.caption for v in verifications])
        ]
        if len(sims) != len(verifications):
            raise ValueError(
                f"the similarity callable returned {len(sims)} scores for {len(verifications)} texts"
            )
        return [Scores(c, s, s) for c, s in zip(coverage, sims, strict=True)]

    @staticmethod
    def rank(scores: Sequence[Scores]) -> list[int]:
        """Candidate indices, best first: by score, then coverage, then proposal order (stable)."""
        return sorted(range(len(scores)), key=lambda i: (-scores[i].score, -scores[i].coverage, i))


__all__ = ["Evaluator", "GeoMeldSimilarity", "Scores", "coverage_score", "fact_topic"]
