"""The ``huggingface`` schema metadata of a shard (its ``datasets`` features), written without importing ``datasets``.

``datasets`` reads a Parquet file's features from the ``huggingface`` key of its Arrow schema metadata (JSON
``{"info": {"features": ...}}``): there the shards say that ``thumbnail`` is an ``Image``, which the Hub's
viewer renders. Building that value with ``datasets.Features`` costs every builder process the import of
``datasets`` and pandas (about 2.5 s of a 3.5 s start on the loaded build machine, for one constant); the
shard schema uses a handful of Arrow types, so the same JSON is written here from the schema itself.
``tests/test_build_scale.py`` checks it equals ``datasets.Features.from_arrow_schema`` of the same schema.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

#: Arrow type -> ``datasets`` ``Value`` dtype, for the types a shard schema uses
_VALUE_DTYPES: dict[pa.DataType, str] = {
    pa.bool_(): "bool",
    pa.int8(): "int8",
    pa.int16(): "int16",
    pa.int32(): "int32",
    pa.int64(): "int64",
    pa.float16(): "float16",
    pa.float32(): "float32",
    pa.float64(): "float64",
    pa.string(): "string",
    pa.binary(): "binary",
}


def _feature(name: str, arrow_type: pa.DataType) -> dict[str, Any]:
    if arrow_type in _VALUE_DTYPES:
        return {"dtype": _VALUE_DTYPES[arrow_type], "_type": "Value"}
    if pa.types.is_list(arrow_type):
        return {"feature": _feature(name, arrow_type.value_type), "_type": "List"}
    raise ValueError(
        f"column {name!r}: expected one of {sorted(map(str, _VALUE_DTYPES))} or a list of them, found {arrow_type}"
    )


def features_metadata(schema: pa.Schema, overrides: Mapping[str, Mapping[str, Any]]) -> bytes:
    """The ``huggingface`` metadata value for ``schema``, with ``overrides`` (column -> feature dict) applied.

    ``overrides`` names columns whose feature is not their Arrow type's ``Value``, such as
    ``{"thumbnail": {"decode": False, "_type": "Image"}}``.
    """
    features = {
        f.name: dict(overrides[f.name]) if f.name in overrides else _feature(f.name, f.type) for f in schema
    }
    return json.dumps({"info": {"features": features}}).encode()
