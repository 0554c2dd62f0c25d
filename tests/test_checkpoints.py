"""Checkpoints written under a temporary name and renamed when complete; `--resume` from the newest one that
verifies, with the reason each newer one was skipped. A real transformers Trainer on a tiny regression model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from transformers import Trainer, TrainingArguments

from dataset_scripts.errors import UsageError
from modeling_geomeld.training.checkpoints import (
    STAGING_DIR,
    AtomicCheckpointMixin,
    RunLayout,
    find_resumable_checkpoint,
    verify_checkpoint,
    verify_safetensors,
)


class Regressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": nn.functional.mse_loss(self.linear(x).squeeze(-1), y)}


class Rows(torch.utils.data.Dataset):
    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(32, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])

    def __len__(self) -> int:
        return 32

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i]}


class AtomicTrainer(AtomicCheckpointMixin, Trainer):
    crash_at: int | None = None

    def _save_rng_state(self, output_dir: str) -> None:
        if self.state.global_step == self.crash_at:  # a kill half-way through the save
            raise KeyboardInterrupt("killed during the checkpoint save")
        super()._save_rng_state(output_dir)


def _trainer(out: Path, max_steps: int, crash_at: int | None = None) -> AtomicTrainer:
    args = TrainingArguments(
        output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=4, save_steps=1,
        save_total_limit=2, report_to=[], use_cpu=True, logging_steps=1, learning_rate=1e-2, seed=0,
    )  # fmt: skip
    torch.manual_seed(0)
    trainer = AtomicTrainer(model=Regressor(), args=args, train_dataset=Rows())
    trainer.crash_at = crash_at
    return trainer


def test_a_crash_during_a_save_leaves_no_checkpoint_and_resume_takes_the_last_good(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path, 3, crash_at=3).train()
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert (tmp_path / STAGING_DIR / "checkpoint-3" / "model.safetensors").is_file()  # the half-written one
    choice = find_resumable_checkpoint(tmp_path)
    assert choice.checkpoint == tmp_path / "checkpoint-2"
    assert "skipped newer checkpoint-3 (its save never finished)" in choice.message()

    resumed = _trainer(tmp_path, 4)
    resumed.train(resume_from_checkpoint=str(choice.checkpoint))
    assert resumed.state.global_step == 4
    # rotation still keeps two, and the staging leftover of step 3 was replaced by the real step 3 save
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4"]
    assert not list((tmp_path / STAGING_DIR).iterdir())
    assert verify_checkpoint(tmp_path / "checkpoint-4") is None


def test_truncated_or_stateless_newer_checkpoints_are_skipped_with_the_reason(tmp_path: Path) -> None:
    _trainer(tmp_path, 2).train()
    newest = tmp_path / "checkpoint-2" / "model.safetensors"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) - 7])
    choice = find_resumable_checkpoint(tmp_path)
    assert choice.checkpoint == tmp_path / "checkpoint-1"
    assert "checkpoint-2 (model.safetensors: header says" in choice.message() and "(truncated)" in choice.message()

    (tmp_path / "checkpoint-1" / "trainer_state.json").write_text("{not json")
    with pytest.raises(UsageError, match=r"no checkpoint in .* verifies: checkpoint-2 .*checkpoint-1 \(trainer_state.json is unreadable"):
        find_resumable_checkpoint(tmp_path)
    with pytest.raises(UsageError, match="no checkpoint-N folder"):
        find_resumable_checkpoint(tmp_path / "empty")


def test_verify_safetensors_against_the_official_writer(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(3, 5), "b": torch.ones(7, dtype=torch.int64), "c": torch.zeros(2, dtype=torch.bfloat16)}, str(path))
    assert verify_safetensors(path) is None
    raw = path.read_bytes()
    (tmp_path / "short.safetensors").write_bytes(raw[:5])
    assert "shorter than a safetensors header" in str(verify_safetensors(tmp_path / "short.safetensors"))
    (tmp_path / "head.safetensors").write_bytes(raw[:20])
    assert "(truncated)" in str(verify_safetensors(tmp_path / "head.safetensors"))
    n = int.from_bytes(raw[:8], "little")
    header: dict[str, Any] = json.loads(raw[8 : 8 + n])
    header["a"]["shape"] = [3, 6]  # the header no longer matches the bytes it points at
    body = json.dumps(header).encode()
    (tmp_path / "bad.safetensors").write_bytes(len(body).to_bytes(8, "little") + body + raw[8 + n :])
    assert "tensor 'a' spans 60 bytes, its dtype and shape need 72" in str(verify_safetensors(tmp_path / "bad.safetensors"))


def test_the_run_layout_keeps_checkpoints_apart_from_the_release(tmp_path: Path) -> None:
    layout = RunLayout.of(tmp_path / "run")
    assert layout.checkpoints == tmp_path / "run" / "checkpoints" and layout.release == tmp_path / "run" / "release"
    assert RunLayout.of(tmp_path / "run", tmp_path / "elsewhere").release == tmp_path / "elsewhere"
    with pytest.raises(UsageError, match="must not lie inside the checkpoints folder"):
        RunLayout.of(tmp_path / "run", tmp_path / "run" / "checkpoints" / "release")


def test_resume_on_a_run_of_the_earlier_layout_says_where_to_move_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from modeling_geomeld.cli import main

    dataset = tmp_path / "ds" / "data" / "default"
    dataset.mkdir(parents=True)
    (dataset / "train-0.parquet").write_bytes(b"")  # only its presence is checked before any training
    (tmp_path / "old" / "checkpoint-2").mkdir(parents=True)
    assert main(["pretrain", "--dataset", str(tmp_path / "ds"), "--output-dir", str(tmp_path / "old"), "--resume"]) == 2
    said = capsys.readouterr().err
    assert "checkpoint-N folders of the earlier layout; move them into" in said and str(tmp_path / "old" / "checkpoints") in said
