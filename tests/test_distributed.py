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
    from modeling_geomeld.training import pretraining

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


ITC_DRIVER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    import torch.distributed as dist
    sys.path.insert(0, sys.argv[2])
    from _tiny import inputs, tiny_config
    from modeling_geomeld import GeoMeldForPreTraining, contrastive_loss
    from modeling_geomeld.modeling_geomeld import gather_with_grad

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    n = img.shape[0] // world
    local_img = img[rank * n : (rank + 1) * n].clone().requires_grad_(True)
    local_txt = txt[rank * n : (rank + 1) * n].clone().requires_grad_(True)
    scale = torch.tensor(2.0, requires_grad=True)
    loss = contrastive_loss(gather_with_grad(local_img), gather_with_grad(local_txt), scale)
    loss.backward()

    torch.manual_seed(0)
    model = GeoMeldForPreTraining(tiny_config(use_mpmae=False, use_jepa=False)).eval()
    x = inputs(["sentinel2"], batch=4)["sentinel2"][rank * 2 : (rank + 1) * 2]
    feats = torch.randn(4, 20, generator=torch.Generator().manual_seed(1))[rank * 2 : (rank + 1) * 2]
    with torch.no_grad():
        itc = model({"sentinel2": x}, text_features=feats, mask=torch.zeros(2, 3, 3, dtype=torch.bool)).itc_loss
    with open(os.path.join(sys.argv[1], f"itc{rank}.json"), "w") as f:
        json.dump({"loss": float(loss), "img_grad": local_img.grad.tolist(), "txt_grad": local_txt.grad.tolist(),
                   "scale_grad": float(scale.grad), "world": world, "model_itc": float(itc)}, f)
    dist.destroy_process_group()
    """
)


def test_itc_gathers_negatives_across_ranks_with_gradients(tmp_path: Path) -> None:
    """open_clip's gather_with_grad: with two gloo ranks holding half a batch each, the loss equals the
    single-process loss on the whole batch, and each rank's gradient is world x its slice of the global one
    (DDP's gradient average divides it back)."""
    import torch

    from modeling_geomeld import GeoMeldForPreTraining, contrastive_loss

    (tmp_path / "itc_driver.py").write_text(ITC_DRIVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port()), str(tmp_path / "itc_driver.py"), str(tmp_path), str(Path(__file__).parent),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"itc{r}.json").read_text()) for r in (0, 1)]

    g = torch.Generator().manual_seed(0)
    img = torch.randn(6, 5, generator=g).requires_grad_(True)
    txt = torch.randn(6, 5, generator=g).requires_grad_(True)
    scale = torch.tensor(2.0, requires_grad=True)
    loss = contrastive_loss(img, txt, scale)
    loss.backward()
    single = loss.detach()
    for r, got in enumerate(ranks):
        assert got["world"] == 2
        assert abs(got["loss"] - float(single)) < 1e-6
        assert torch.allclose(torch.tensor(got["img_grad"]) / 2, img.grad[r * 3 : (r + 1) * 3], atol=1e-6)
        assert torch.allclose(torch.tensor(got["txt_grad"]) / 2, txt.grad[r * 3 : (r + 1) * 3], atol=1e-6)
        assert abs(got["scale_grad"] - float(scale.grad)) < 1e-6

    import _tiny

    torch.manual_seed(0)
    model = GeoMeldForPreTraining(_tiny.tiny_config(use_mpmae=False, use_jepa=False)).eval()
    x = _tiny.inputs(["sentinel2"], batch=4)
    feats = torch.randn(4, 20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = model(x, text_features=feats, mask=torch.zeros(4, 3, 3, dtype=torch.bool)).itc_loss
    assert all(abs(r["model_itc"] - float(whole)) < 1e-5 for r in ranks)
