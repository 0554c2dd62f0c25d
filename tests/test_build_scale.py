"""The builder at scale: a worker's imports (no torch, no transformers), the shard schema without datasets,
``--workers auto`` and the per-stage cost profile."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dataset_scripts.hf_features import features_metadata
from dataset_scripts.writer import _PLAIN_SCHEMA, SCHEMA

#: the model stack a builder process must never pay for (4-8 s of torch per worker, measured in issue 18);
#: pandas is not listed: pyarrow imports it itself on the first ``pa.array`` from Python lists (writing a shard)
MODEL_STACK = ("torch", "transformers", "datasets")

_FRESH_BUILD = r"""
import json, sys, time
t0 = time.perf_counter()
import dataset_scripts.build as b
import dataset_scripts.captions.pipeline  # the template caption stage of --caption
import_s = time.perf_counter() - t0
from dataset_scripts.terramind import write_terramind_manifest
root, out = sys.argv[1], sys.argv[2]
manifest = write_terramind_manifest(root, out + "/m.csv")
report = b.build(f"manifest:{manifest}", out + "/built", b.BuildOptions(workers=0, progress=False, caption=True))
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[3].split(",")))
registry = sys.modules["modeling_geomeld.modalities"]
import modeling_geomeld  # model users still get the Auto classes, and the builder's registry object
from transformers import AutoConfig
print(json.dumps({
    "import_s": import_s, "built": report.built, "loaded": loaded,
    "same_registry": modeling_geomeld.modalities is registry and b.align.__globals__["MODALITIES"] is modeling_geomeld.MODALITIES,
    "auto": type(AutoConfig.for_model("geomeld")).__name__,
}))
"""


def test_a_fresh_builder_process_imports_no_model_stack_and_model_users_still_get_auto_classes(
    terramind_dir: Path, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH_BUILD, str(terramind_dir), str(tmp_path), ",".join(MODEL_STACK)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["built"] == 5
    assert result["loaded"] == [], f"a build (captions included) imported {result['loaded']}"
    # well under a second unloaded (0.7-0.8 s at load average 15 on 2 cores); torch alone takes 4-8 s there
    assert result["import_s"] < 2.0, result
    assert result["same_registry"] and result["auto"] == "GeoMeldConfig"


def test_the_shard_schema_carries_the_features_datasets_itself_writes() -> None:
    from datasets import Features, Image

    features = Features.from_arrow_schema(_PLAIN_SCHEMA)
    features["thumbnail"] = Image(decode=False)
    assert SCHEMA.metadata[b"huggingface"] == features.arrow_schema.metadata[b"huggingface"]
    assert json.loads(SCHEMA.metadata[b"huggingface"]) == {"info": {"features": features.to_dict()}}


def test_an_unknown_column_type_is_named() -> None:
    import pyarrow as pa

    with pytest.raises(ValueError, match=r"column 'when': expected one of .* found timestamp\[s\]"):
        features_metadata(pa.schema([pa.field("when", pa.timestamp("s"))]), {})
