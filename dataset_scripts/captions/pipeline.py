"""Caption one sample: orchestrate -> propose K -> verify and repair -> evaluate -> keep the best.

The result keeps everything a reviewer needs to audit a caption: the fact sheet, every candidate with its
proposer, per-claim verdicts, what repair removed and its scores, and which candidate was kept. It is
plain JSON (``to_dict``), stored with the sample by the ``caption`` command.

When no candidate survives verification (a language model that only hallucinates, say) the template
captioner, which writes only checkable words, is asked as a fallback, so every tile gets a grounded
caption unless its fact sheet is empty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dataset_scripts.types import AlignedSample

from .captioners import Candidate, Captioner, TemplateCaptioner
from .evaluator import Evaluator, Scores
from .orchestrator import FactSheet, build_fact_sheet, water_layout
from .verifier import Verification, Verifier


@dataclass
class CaptionResult:
    """The kept caption of one tile and every candidate considered."""

    tile_id: str
    caption: str | None
    kept_index: int | None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tile_id": self.tile_id,
            "caption": self.caption,
            "kept_index": self.kept_index,
            "candidates": self.candidates,
            "facts": self.facts,
        }


def _record(candidate: Candidate, verification: Verification, scores: Scores) -> dict[str, Any]:
    return {
        "text": candidate.text,
        "source": candidate.source,
        "seed": candidate.seed,
        "accepted": verification.accepted,
        "final_text": verification.text,
        "removed": verification.removed,
        "reasons": verification.reasons,
        "claims": [c.to_dict() for c in verification.claims],
        "scores": scores.to_dict(),
    }


def caption_sample(
    sheet: FactSheet,
    captioners: Sequence[Captioner] | None = None,
    k: int = 4,
    seed: int = 0,
    evaluator: Evaluator | None = None,
    image_embedding: Any = None,
    repair: bool = True,
    fallback: Captioner | None = None,
) -> CaptionResult:
    """Propose ``k`` captions per captioner, verify (repairing contradicted clauses), rank, keep the best.

    ``fallback`` (default: a :class:`TemplateCaptioner`) is asked only when no candidate was accepted;
    pass the same template captioner in ``captioners`` to have it compete from the start.
    """
    if k < 1:
        raise ValueError(f"expected at least one candidate per captioner, got k={k}")
    captioners = list(captioners) if captioners is not None else [TemplateCaptioner()]
    evaluator = evaluator or Evaluator()
    verifier = Verifier(sheet)
    candidates = [c for captioner in captioners for c in captioner.propose(sheet, k, seed)]
    verifications = [verifier.verify(c.text, repair=repair) for c in candidates]
    if not any(v.accepted for v in verifications):
        extra = fallback or TemplateCaptioner()
        if all(getattr(c, "name", None) != extra.name for c in captioners):
            more = extra.propose(sheet, k, seed)
            candidates += more
            verifications += [verifier.verify(c.text, repair=repair) for c in more]
    scores = evaluator.score(sheet, verifications, image_embedding)
    records = [_record(c, v, s) for c, v, s in zip(candidates, verifications, scores, strict=True)]
    accepted = [i for i in evaluator.rank(scores) if verifications[i].accepted]
    kept = accepted[0] if accepted else None
    for rank, i in enumerate(evaluator.rank(scores)):
        records[i]["rank"] = rank
    return CaptionResult(
        tile_id=sheet.tile_id,
        caption=verifications[kept].text if kept is not None else None,
        kept_index=kept,
        candidates=records,
        facts=sheet.to_dict(),
    )


def caption_aligned_sample(
    sample: AlignedSample,
    signals: Mapping[str, Any],
    captioners: Sequence[Captioner] | None = None,
    k: int = 4,
    seed: int = 0,
) -> CaptionResult:
    """The build-stage entry point: an aligned sample and its signals -> its caption and audit record.

    The builder can call this right after :func:`dataset_scripts.signals.compute_signals` and store
    ``result.caption`` in the row's ``caption`` column (``result.to_dict()`` is the audit record).
    """
    sheet = build_fact_sheet(sample.tile_id, signals, sample.metadata, water_layout(sample.arrays))
    return caption_sample(sheet, captioners, k=k, seed=seed)
