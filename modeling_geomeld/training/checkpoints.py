"""Checkpoints that are either complete or absent, and `--resume` from the newest one that verifies.

transformers' `Trainer._save_checkpoint` writes weights, optimizer, scheduler, RNG states and
`trainer_state.json` straight into `checkpoint-N`, and `train(resume_from_checkpoint=True)` takes the
highest-numbered `checkpoint-N` folder whatever it holds: a crash during a save leaves a folder without
`trainer_state.json` ("Can't find a valid checkpoint") and a truncated `model.safetensors` fails with a
`SafetensorError` naming no file, although an earlier good checkpoint is there.

:class:`AtomicCheckpointMixin` makes the Trainer write `checkpoint-N` under `<output_dir>/.incomplete/` and
rename it into place once every rank has written its part, then rotate as the Trainer would.
:func:`find_resumable_checkpoint` verifies every checkpoint (safetensors headers against file sizes,
`trainer_state.json` readable, torch pickles' zip directories intact), newest first, and says which one it
takes and why each newer one was skipped.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import struct
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataset_scripts.errors import UsageError

#: where checkpoints are written before they are complete (not matched by Trainer's `checkpoint-N` pattern)
STAGING_DIR = ".incomplete"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
#: bytes per element of the safetensors dtypes
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


def verify_safetensors(path: Path) -> str | None:
    """Why `path` is not a complete safetensors file (``None`` when it is): the header's length and JSON, and
    every tensor's byte range against its dtype and shape and against the file's size."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{path.name}: {size} bytes, shorter than a safetensors header"
        (n,) = struct.unpack("<Q", head)
        if 8 + n > size:
            return f"{path.name}: header of {n} bytes but the file holds {size} (truncated)"
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return f"{path.name}: header is not JSON ({err})"
    data = size - 8 - n
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = (int(x) for x in info["data_offsets"])
            count = 1
            for dim in info["shape"]:
                count *= int(dim)
            expected = count * _DTYPE_BYTES[info["dtype"]]
        except (KeyError, TypeError, ValueError) as err:
            return f"{path.name}: tensor {name!r} has a malformed header entry ({err!r})"
        if stop - begin != expected:
            return f"{path.name}: tensor {name!r} spans {stop - begin} bytes, its dtype and shape need {expected}"
        end = max(end, stop)
    if end != data:
        return f"{path.name}: header says {end} bytes of tensors, the file holds {data} (truncated)"
    return None


def verify_checkpoint(folder: str | Path) -> str | None:
    """Why `folder` cannot be resumed from (``None`` when it can)."""
    folder = Path(folder)
    state = folder / "trainer_state.json"
    try:
        step = json.loads(state.read_text(encoding="utf-8"))["global_step"]
        int(step)
    except FileNotFoundError:
        return "trainer_state.json is missing (the save never finished)"
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
        return f"trainer_state.json is unreadable ({type(err).__name__}: {err})"
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        return "no *.safetensors weights"
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (json.JSONDecodeError, KeyError, AttributeError) as err:
            return f"model.safetensors.index.json is unreadable ({err!r})"
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing:
            return f"weight shards {missing} are missing"
    for path in weights:
        reason = verify_safetensors(path)
        if reason:
            return reason
    for path in sorted(folder.glob("*.pt")) + sorted(folder.glob("*.pth")):
        # torch.save writes zip archives; a truncated one has no central directory at its end
        if not zipfile.is_zipfile(path):
            return f"{path.name} is not a complete torch archive (truncated?)"
    return None


@dataclass(frozen=True)
class ResumeChoice:
    """The checkpoint `--resume` takes, and the newer ones it skipped with the reason."""

    checkpoint: Path
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def message(self) -> str:
        text = f"resuming from {self.checkpoint}"
        if self.skipped:
            text += "; skipped newer " + "; ".join(f"{p.name} ({why})" for p, why in self.skipped)
        return text


def _numbered(folder: Path) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    return sorted(found, reverse=True)


def find_resumable_checkpoint(output_dir: str | Path) -> ResumeChoice:
    """The newest `checkpoint-N` under `output_dir` that verifies; saves a crash left under `.incomplete/`
    count as skipped. Raises `UsageError` when nothing there can be resumed from."""
    output_dir = Path(output_dir)
    staged = _numbered(output_dir / STAGING_DIR)
    steps = _numbered(output_dir)
    skipped: list[tuple[Path, str]] = []
    for step, path in steps:
        reason = verify_checkpoint(path)
        if reason is None:
            unfinished = [(p, "its save never finished") for s, p in staged if s > step]
            return ResumeChoice(path, unfinished + skipped)
        skipped.append((path, reason))
    skipped = [(p, "its save never finished") for _, p in staged] + skipped
    if not steps and not skipped:
        raise UsageError(f"--resume: no checkpoint-N folder in {output_dir}; run without --resume to start training")
    raise UsageError(
        f"--resume: no checkpoint in {output_dir} verifies: "
        + "; ".join(f"{p.name} ({why})" for p, why in skipped)
        + "; run without --resume to start again"
    )


def resume_checkpoint(output_dir: str | Path) -> str:
    """`find_resumable_checkpoint` for `Trainer.train(resume_from_checkpoint=...)`, saying its choice on stderr."""
    choice = find_resumable_checkpoint(output_dir)
    print(choice.message(), file=sys.stderr)
    return str(choice.checkpoint)


def save_release_processor(processor: Any, folder: str | Path) -> None:
    """Save `processor` into `folder` as a release would: for inference, keeping the input size (no crop),
    whatever crops the training used."""
    release = copy.deepcopy(processor)
    image = getattr(release, "image_processor", release)
    if hasattr(image, "crop_size"):
        image.crop_size, image.crop_mode = None, "center"
    release.save_pretrained(str(folder))


class AtomicCheckpointMixin:
    """For a `transformers.Trainer` subclass (`class T(AtomicCheckpointMixin, Trainer)`): every checkpoint is
    written under `.incomplete/` and renamed to `checkpoint-N` once complete, with `release_processor` (the
    processor, statistics included) saved into it."""

    def __init__(self, *args: Any, release_processor: Any = None, **kwargs: Any):
        self.release_processor = release_processor
        self._staging = False
        super().__init__(*args, **kwargs)

    def _get_output_dir(self, trial: Any) -> str:
        run_dir: str = super()._get_output_dir(trial)  # type: ignore[misc]
        return os.path.join(run_dir, STAGING_DIR) if self._staging else run_dir

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

        trainer: Any = self
        run_dir = Path(self._get_output_dir(trial))
        name = f"{PREFIX_CHECKPOINT_DIR}-{trainer.state.global_step}"
        staged, final = run_dir / STAGING_DIR / name, run_dir / name
        if trainer.args.should_save and staged.exists():
            shutil.rmtree(staged)  # the remains of an earlier crash at this very step
        trainer.accelerator.wait_for_everyone()
        self._staging = True
        try:
            super()._save_checkpoint(model, trial)  # type: ignore[misc]
        finally:
            self._staging = False
        if trainer.args.should_save and self.release_processor is not None:
            save_release_processor(self.release_processor, staged)
        trainer.accelerator.wait_for_everyone()  # every rank's RNG state is in before the rename
        if trainer.args.should_save:
            if final.exists():
                shutil.rmtree(final)
            os.replace(staged, final)
            rotate_checkpoints(
                output_dir=str(run_dir),
                save_total_limit=trainer.args.save_total_limit,
                best_model_checkpoint=trainer.state.best_model_checkpoint,
                use_mtime=True,
            )
        trainer.accelerator.wait_for_everyone()
