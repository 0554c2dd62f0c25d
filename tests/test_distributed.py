"""Data-parallel pretraining with two CPU processes (torchrun, gloo): ranks read different samples and end
with identical weights."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from _build_helpers import TERRAMIND_IDS, terramind_rows, write_manifest

from dataset_scripts.build import BuildOptions, build

DRIVER = textwrap.dedent(
    """
    import hashlib, json, os, sys
    import torch
    from modeling_geomeld import pretraining

    seen = []
    collate = pretraining.RowCollator.__call__
    def spy(self, rows):  # record which samples this rank trains on
        seen.extend(r["tile_id"] for r in rows)
        return collate(self, rows)
    pretraining.RowCollator.__call__ = spy

    dataset, out = sys.argv[1], sys.argv[2]
    result = pretraining.pretrain(
        dataset, out, preset="tiny", max_steps=2, batch_size=1, save_steps=100, logging_steps=1,
        config_overrides={"encoder_config": {"image_size": 64}}, init_text_from_minilm=False,
    )
    digest = hashlib.sha256()
    for name, tensor in sorted(result["model"].state_dict().items()):
        digest.update(name.encode()); digest.update(tensor.detach().cpu().numpy().tobytes())
    rank = int(os.environ["RANK"])
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"seen": seen, "weights": digest.hexdigest(), "world": world}, f)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_process_data_parallel_pretraining(terramind_dir: Path, tmp_path: Path) -> None:
    rows = [r for t in TERRAMIND_IDS for r in terramind_rows(terramind_dir, t)]
    manifest = write_manifest(rows, tmp_path / "manifest.csv")
    build(f"manifest:{manifest}", tmp_path / "ds", BuildOptions(workers=0, progress=False))
    (tmp_path / "driver.py").write_text(DRIVER)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port()), str(tmp_path / "driver.py"), str(tmp_path / "ds"), str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 for r in ranks)
    assert ranks[0]["weights"] == ranks[1]["weights"]  # gradients were all-reduced every step
    assert ranks[0]["seen"] and ranks[1]["seen"]
    assert set(ranks[0]["seen"]).isdisjoint(ranks[1]["seen"])  # each rank read its own shard of the data
