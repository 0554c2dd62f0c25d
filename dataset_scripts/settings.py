"""The one place where a build's settings are resolved: build flags, source options, their types and defaults.

``geomeld build`` has flags that several components use (``--max-cloud-cover`` decides the STAC source's
scene selection *and* the aligner's cloud rule) and per-source options (``--option KEY=VALUE``). Both are
resolved here, once, before anything is opened:

* :data:`SOURCE_OPTIONS` declares every option of every source kind: its type (``str``, ``int``,
  ``float``, ``bool``, ``path``, ``list`` -- comma-separated --, ``mapping`` -- ``KEY:VALUE`` pairs
  joined by commas, or a JSON object --, ``json``), default, allowed values and help. ``geomeld build
  --help`` prints this table, and a test checks it against each source class's signature.
* :func:`parse_option_pairs` turns the command line's ``KEY=VALUE`` strings into typed values, refusing an
  unknown key by name with the list of keys the source knows, and a value that does not parse.
* :func:`resolve_source_options` completes them with the values bound to build flags (an option bound to
  a flag is set by that flag only, never twice with two values), so every component sees the values in
  force; the build records exactly these in its plan and the source's ``describe()`` shows them.

Every refusal is a :class:`~dataset_scripts.errors.UsageError` (one line, exit code 2). This module
imports nothing heavy, so ``--help`` and option errors cost no STAC or GDAL import.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import UsageError

if TYPE_CHECKING:
    from .build import BuildOptions

Kind = Literal["str", "int", "float", "bool", "path", "list", "mapping", "json"]

#: the kinds of ``--source KIND:LOCATION`` (the classes are in :data:`dataset_scripts.sources.SOURCE_KINDS`)
SOURCE_EXAMPLES = {
    "manifest": "manifest:/data/manifest.csv",
    "stac": "stac:https://earth-search.aws.element84.com/v1",
    "geomeld-release": "geomeld-release:/data/geomeld/shards",
}


@dataclass(frozen=True)
class OptionSpec:
    """One source option as the command line and the library take it.

    Attributes:
        name: the keyword of the source's constructor (``--option NAME=VALUE``).
        kind: how a command-line string is parsed (see the module docstring).
        default: the value when not given (``None``: none; ``required`` says whether it must be given).
        help: one line for ``geomeld build --help``.
        choices: allowed values of a ``str`` option (``None``: any).
        positive: a number that must be > 0.
        flag: the build flag that sets this option (``--max-cloud-cover``); such an option is not given
            with ``--option``.
        required: the source cannot run without it.
    """

    name: str
    kind: Kind
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    positive: bool = False
    flag: str | None = None
    required: bool = False

    def describe(self) -> str:
        kind = "|".join(self.choices) if self.choices else self.kind
        if self.flag:
            return f"{self.name} ({kind}): set by {self.flag}; {self.help}"
        default = "required" if self.required else f"default {self.default!r}"
        return f"{self.name} ({kind}, {default}): {self.help}"


#: build flags bound to source options: flag -> how its value comes from :class:`BuildOptions`
FLAG_VALUES: Mapping[str, Callable[[BuildOptions], Any]] = {
    "--max-cloud-cover": lambda o: o.align.max_cloud_cover,
    "--max-offset-days": lambda o: o.align.max_offset_days,
    "--size-px x --gsd": lambda o: o.align.size_px * o.align.gsd,
}

SOURCE_OPTIONS: Mapping[str, tuple[OptionSpec, ...]] = {
    "manifest": (),
    "geomeld-release": (),
    "stac": (
        OptionSpec(
            "anchors", "path", None, "anchor list, CSV or JSON Lines: anchor_id,lat,lon[,date]", required=True
        ),
        OptionSpec(
            "profile",
            "str",
            None,
            "API profile (asset keys, collections); default: the one the URL names, else planetary-computer",
            choices=("earth-search", "planetary-computer"),
        ),
        OptionSpec(
            "s2_product", "str", "l2a", "which Sentinel-2 product is the reference", choices=("l2a", "l1c")
        ),
        OptionSpec(
            "modalities", "list", None, "registry names to search, comma-separated (default: the profile's)"
        ),
        OptionSpec(
            "collections", "mapping", None, "MODALITY:COLLECTION pairs overriding the profile's collections"
        ),
        OptionSpec(
            "assets", "json", None, "JSON {modality: {asset key: band names}} replacing the profile's assets"
        ),
        OptionSpec(
            "datetime", "str", "2017-01-01/2022-12-31", "START/END searched for anchors without a date"
        ),
        OptionSpec(
            "max_cloud_cover",
            "float",
            10.0,
            "S2 eo:cloud_cover must be under it, percent",
            flag="--max-cloud-cover",
        ),
        OptionSpec(
            "anchor_window_days",
            "float",
            15.0,
            "S2 search window around an anchor's date, days",
            positive=True,
        ),
        OptionSpec(
            "window_days",
            "float",
            15.0,
            "S1 / Dynamic World window around the S2 date, days",
            flag="--max-offset-days",
        ),
        OptionSpec(
            "footprint_m", "float", 1280.0, "side of the searched footprint, metres", flag="--size-px x --gsd"
        ),
        OptionSpec("max_items", "int", 200, "items one API search returns at most", positive=True),
        OptionSpec(
            "sign",
            "str",
            None,
            "sign asset hrefs (needs planetary-computer)",
            choices=("planetary-computer",),
        ),
        OptionSpec("timeout_s", "float", 60.0, "per-request timeout of API searches, seconds", positive=True),
    ),
}


def split_source(spec: str) -> tuple[str, str]:
    """``"stac:https://..."`` -> ``("stac", "https://...")``; refuses an unknown kind or an empty location."""
    kind, sep, location = spec.partition(":")
    if not sep or kind not in SOURCE_OPTIONS or not location:
        raise UsageError(
            f"--source must look like KIND:LOCATION with KIND one of {sorted(SOURCE_OPTIONS)}; got {spec!r} "
            f"(e.g. {', '.join(SOURCE_EXAMPLES.values())})"
        )
    return kind, location


def _known(kind: str) -> str:
    names = [o.name for o in SOURCE_OPTIONS[kind] if o.flag is None]
    return f"it knows {names}" if names else "it takes no --option"


def _spec(kind: str, key: str) -> OptionSpec:
    by_name = {o.name: o for o in SOURCE_OPTIONS[kind]}
    if key not in by_name:
        raise UsageError(f"source {kind!r} has no option {key!r}; {_known(kind)}")
    return by_name[key]


def _fail(spec: OptionSpec, value: Any, expected: str) -> UsageError:
    return UsageError(f"option {spec.name}: expected {expected}, found {value!r}")


def _parse_mapping(spec: OptionSpec, text: str) -> dict[str, str]:
    if text.lstrip().startswith("{"):
        value = _parse_json(spec, text)
        if not isinstance(value, dict):
            raise _fail(spec, text, "a JSON object")
        return value
    out: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, val = pair.partition(":")
        if not sep or not key.strip() or not val.strip():
            raise _fail(spec, text, "KEY:VALUE pairs joined by commas (or a JSON object)")
        out[key.strip()] = val.strip()
    return out


def _parse_json(spec: OptionSpec, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise _fail(spec, text, f"JSON ({err.msg} at character {err.pos})") from None


def coerce(spec: OptionSpec, value: Any) -> Any:
    """One option's value, given as a command-line string or a Python value, checked against its spec."""
    if value is None:
        if spec.required:
            raise UsageError(f"option {spec.name} is required: {spec.help}")
        return None
    text = value.strip() if isinstance(value, str) else None
    out: Any
    if spec.kind in ("int", "float"):
        number_type = int if spec.kind == "int" else float
        try:
            if isinstance(value, bool) or (spec.kind == "int" and isinstance(value, float)):
                raise ValueError
            out = number_type(text if text is not None else value)
        except (TypeError, ValueError):
            raise _fail(spec, value, f"{'an integer' if spec.kind == 'int' else 'a number'}") from None
        if not math.isfinite(out) or (spec.positive and out <= 0):
            raise _fail(spec, value, "a positive number" if spec.positive else "a finite number")
    elif spec.kind == "bool":
        words = {
            "true": True,
            "yes": True,
            "1": True,
            "on": True,
            "false": False,
            "no": False,
            "0": False,
            "off": False,
        }
        if isinstance(value, bool):
            out = value
        elif text is not None and text.lower() in words:
            out = words[text.lower()]
        else:
            raise _fail(spec, value, "true or false")
    elif spec.kind == "path":
        out = Path(text if text is not None else value).expanduser()
        if not out.exists():
            raise UsageError(f"option {spec.name}: expected an existing file, found nothing at {str(out)!r}")
    elif spec.kind == "list":
        items = text.split(",") if text is not None else value
        if not isinstance(items, Sequence) or isinstance(items, str | bytes):
            raise _fail(spec, value, "a comma-separated list")
        out = [str(i).strip() for i in items if str(i).strip()]
        if not out:
            raise _fail(spec, value, "at least one item")
    elif spec.kind == "mapping":
        out = _parse_mapping(spec, text) if text is not None else value
        if not isinstance(out, Mapping):
            raise _fail(spec, value, "KEY:VALUE pairs joined by commas (or a JSON object)")
    elif spec.kind == "json":
        out = _parse_json(spec, text) if text is not None else value
        if not isinstance(out, Mapping):
            raise _fail(spec, value, "a JSON object")
    else:
        out = text if text is not None else str(value)
    if spec.choices is not None and out not in spec.choices:
        raise _fail(spec, value, f"one of {list(spec.choices)}")
    return out


def parse_option_pairs(kind: str, pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """``--option KEY=VALUE`` strings -> typed values; unknown, repeated or flag-bound keys are refused."""
    out: dict[str, Any] = {}
    for key, text in pairs:
        spec = _spec(kind, key)
        if spec.flag is not None:
            raise UsageError(f"option {key} is set by the build flag {spec.flag}; use that flag instead")
        if key in out:
            raise UsageError(f"option {key} given twice ({out[key]!r} and {text!r}); give it once")
        out[key] = coerce(spec, text)
    return out


def resolve_source_options(source: str, options: BuildOptions, given: Mapping[str, Any]) -> dict[str, Any]:
    """Every option of ``source``'s kind with the value in force: given, bound to a flag, or the default.

    ``given`` may hold command-line strings or Python values. A flag-bound option given with a value other
    than its flag's is refused: the aligner and the source would otherwise apply different limits.
    """
    kind, _ = split_source(source)
    for key in given:
        _spec(kind, key)  # refuse unknown keys first, by name
    resolved: dict[str, Any] = {}
    for spec in SOURCE_OPTIONS[kind]:
        if spec.flag is not None:
            value = FLAG_VALUES[spec.flag](options)
            if spec.name in given and coerce(spec, given[spec.name]) != value:
                raise UsageError(
                    f"option {spec.name}={given[spec.name]!r} contradicts the build's {spec.flag} ({value!r}); "
                    f"set it with {spec.flag} only"
                )
            resolved[spec.name] = value
        else:
            resolved[spec.name] = coerce(spec, given.get(spec.name, spec.default))
    return resolved


def describe_options(values: Mapping[str, Any]) -> str:
    """``key=value`` of the options in force, for a source's ``describe()``."""
    return ", ".join(
        f"{k}={str(v) if isinstance(v, Path) else v!r}" for k, v in values.items() if v is not None
    )


def options_help() -> str:
    """The per-source option table that ``geomeld build --help`` prints."""
    lines = ["source options (--option KEY=VALUE; lists comma-separated, mappings KEY:VALUE,... or JSON):"]
    for kind, specs in SOURCE_OPTIONS.items():
        lines.append(f"  {kind}:" + ("" if specs else " none"))
        lines += [f"    {spec.describe()}" for spec in specs]
    return "\n".join(lines)
