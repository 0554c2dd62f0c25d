"""How a source reports an anchor it could not turn into work, without stopping the iteration.

``anchors()`` is a generator: an exception raised inside it ends it, so one corrupt ``.h5`` member or one
anchor with no clear Sentinel-2 scene would end a 2.5M-sample build. Sources therefore catch their own
:class:`~dataset_scripts.types.QuarantineError` per anchor, append a :class:`QuarantineRecord` to their
``quarantined`` list (which the builder copies into its report) and go on; with ``strict=True`` they
re-raise the first one instead, which is what ``geomeld build --strict`` asks for.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..types import QuarantineError


@dataclass(frozen=True)
class QuarantineRecord:
    """One anchor a source skipped: its id, the machine-friendly reason and the human message."""

    anchor_id: str
    reason: str
    message: str


class QuarantineLog:
    """The ``quarantined`` list of a source plus the strict/lenient decision, in one place."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.records: list[QuarantineRecord] = []

    def add(self, anchor_id: str, err: QuarantineError) -> None:
        """Record ``err`` against ``anchor_id``; re-raise it when the source runs strictly."""
        if self.strict:
            raise err
        self.records.append(QuarantineRecord(anchor_id, err.reason, str(err)))
