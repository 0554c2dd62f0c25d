"""OpenStreetMap tags of a sample, as the authors' release ships them in its per-sample metadata.

The release card names an ``osm_tags`` key ("multi-scale OSM tags") but does not document its shape, so
:func:`parse_osm_tags` accepts every shape seen or plausible and refuses the rest with a reason:

* a mapping ``{key: value}`` (the release fixture), a value being a string, a number, a bool or a list
  of those (``{"highway": ["motorway", "primary"]}``);
* a list of ``"key=value"`` strings;
* a mapping ``{scale: tags}`` where each ``tags`` is one of the two shapes above (multi-scale: the
  scale is whatever the release calls it, e.g. ``"1km"``); a mapping is read as scale -> tags when
  every value is itself a mapping or a list of ``"key=value"`` strings;
* a JSON string of any of these.

Anything else (a number, a list of non-strings, a string without ``=``, nested deeper) is refused whole:
half-read tags would make the verifier contradict features the release does list.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_SCALAR = (str, int, float, bool)


@dataclass(frozen=True)
class OsmTags:
    """Parsed tags: ``(key, value)`` -> the scales it was seen at (``"tile"`` for single-scale input)."""

    tags: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)

    def has(self, key: str, value: str | None) -> tuple[str, str] | None:
        """The first tag matching ``key`` and ``value`` (``None``: any value), or ``None``."""
        for k, v in sorted(self.tags):
            if k == key and (value is None or v == value):
                return k, v
        return None


class OsmTagError(ValueError):
    """``osm_tags`` in a shape this reader does not accept (the message says what was expected)."""


def _pairs(tags: Any, where: str) -> list[tuple[str, str]]:
    if isinstance(tags, Mapping):
        out = []
        for key, value in tags.items():
            values = value if isinstance(value, list) else [value]
            for v in values:
                if not isinstance(v, _SCALAR) or isinstance(v, Mapping):
                    raise OsmTagError(
                        f"{where}: expected a tag value string, found {type(v).__name__} under {key!r}"
                    )
                out.append((str(key).strip().lower(), str(v).strip().lower()))
        return out
    if isinstance(tags, Sequence) and not isinstance(tags, (str, bytes)):
        out = []
        for item in tags:
            if not isinstance(item, str) or "=" not in item:
                raise OsmTagError(f"{where}: expected 'key=value' strings, found {item!r}")
            key, _, value = item.partition("=")
            out.append((key.strip().lower(), value.strip().lower()))
        return out
    raise OsmTagError(
        f"{where}: expected a dict of tags or a list of 'key=value' strings, found {type(tags).__name__}"
    )


def _is_scale_map(value: Mapping[str, Any]) -> bool:
    return bool(value) and all(
        isinstance(v, Mapping)
        or (isinstance(v, list) and v and all(isinstance(i, str) and "=" in i for i in v))
        for v in value.values()
    )


def parse_osm_tags(value: Any) -> OsmTags:
    """``osm_tags`` in any accepted shape (module docstring) -> :class:`OsmTags`; :class:`OsmTagError` else."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise OsmTagError(f"osm_tags: expected JSON text, found {value[:40]!r} ({err.msg})") from err
        if isinstance(value, str):
            raise OsmTagError(
                f"osm_tags: expected a dict or list inside the JSON text, found a string {value[:40]!r}"
            )
    found: dict[tuple[str, str], list[str]] = {}
    if isinstance(value, Mapping) and _is_scale_map(value):
        for scale, tags in value.items():
            for pair in _pairs(tags, f"osm_tags[{scale!r}]"):
                found.setdefault(pair, []).append(str(scale))
    else:
        for pair in _pairs(value, "osm_tags"):
            found.setdefault(pair, []).append("tile")
    return OsmTags({k: tuple(v) for k, v in found.items()})
