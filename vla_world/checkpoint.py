"""Checkpoints as safetensors plus JSON, written atomically, so a crash never leaves half a file.

A checkpoint is a folder:
    model.safetensors      trainable and frozen weights (whatever the caller passes)
    optimizer.safetensors  optional: flattened optimizer state tensors
    state.json             step, epoch, RNG states, optimizer scalars, metrics, free-form meta
    config.yaml            the config that produced it (written by the caller via save_config)

The folder is first written under `<name>.tmp-<pid>` and then renamed into place; a previous
folder of the same name is replaced only after the new one is complete. A kill between the two
renames leaves `<name>.old-<pid>` (and the complete `<name>.tmp-<pid>`) without `<name>`:
`recover_checkpoint` puts the newest complete one back (the runners call it on `--resume`).

Reliability (docs/reliability.md): state.json records a SHA-256 of every weight file, checked on
load; weights with nan/inf are refused before anything is written, so a diverged run never
replaces a good checkpoint; every unreadable part raises `CheckpointError`, one line naming the
file and the fix, which the tools print instead of a traceback.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

log = logging.getLogger("vla_world.checkpoint")
WEIGHT_FILES = ("model.safetensors", "optimizer.safetensors")
FIX_RETRAIN = "retrain it, or pass another checkpoint (e.g. an epoch_<k> folder of the same run)"


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be used as asked; the message names the file and what to do."""


class CheckpointMissing(CheckpointError, FileNotFoundError):
    """No checkpoint (or no part of one) where one was expected."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_finite(tensors: dict[str, torch.Tensor], where: str) -> None:
    """Refuse nan/inf weights (a diverged run): they must never replace a good checkpoint."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{where}: weight {name!r} holds nan/inf, so it was not saved (the training "
                                  "diverged); the last good checkpoint is kept: lower the learning rate and --resume")


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for pid, pstate in state["state"].items():
        scalars["state"][str(pid)] = {}
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars["state"][str(pid)][key] = value
    return tensors, scalars


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], scalars: dict) -> dict:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in scalars["state"].items()}
    for name, tensor in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = tensor
    return {"state": state, "param_groups": scalars["param_groups"]}


def rng_state() -> dict:
    return {
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "python_gauss": random.getstate()[2],
        "numpy": np.random.get_state()[1].tolist(),
        "numpy_pos": int(np.random.get_state()[2]),
        "torch": torch.get_rng_state().tolist(),
    }


def set_rng_state(state: dict) -> None:
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def save_checkpoint(
    folder: str | Path,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict | None = None,
    state: dict | None = None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write a checkpoint folder atomically. `extra_files` maps file name -> text (config.yaml, ...)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    tensors = {k: v.detach().contiguous().cpu() for k, v in model_state.items()}
    check_finite(tensors, str(folder))
    opt = _flatten_optimizer(optimizer_state) if optimizer_state is not None else None
    if opt is not None:
        check_finite(opt[0], f"{folder} (optimizer state)")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(tensors, str(tmp / "model.safetensors"))
    meta = dict(state or {})
    if opt is not None:
        save_file(opt[0], str(tmp / "optimizer.safetensors"))
        meta["optimizer"] = opt[1]
    meta["checksums"] = {name: file_sha256(tmp / name) for name in WEIGHT_FILES if (tmp / name).is_file()}
    (tmp / "state.json").write_text(json.dumps(meta, indent=1, default=str))
    for name, text in (extra_files or {}).items():
        (tmp / name).write_text(text)
    old = folder.with_name(f"{folder.name}.old-{os.getpid()}")
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    if old.exists():
        shutil.rmtree(old)
    return folder


def load_checkpoint(folder: str | Path, verify: bool = True) -> tuple[dict[str, torch.Tensor], dict | None, dict]:
    """Return (model_state, optimizer_state or None, state dict) from a checkpoint folder.

    Raises `CheckpointError` (file + fix) for a missing/corrupt state.json or weight file, and for a
    weight file whose SHA-256 differs from the one recorded at save time (`verify=False` skips that).
    """
    folder = Path(folder)
    model_file = folder / "model.safetensors"
    if not model_file.is_file():
        raise CheckpointMissing(f"{model_file}: no checkpoint here (expected model.safetensors + state.json); "
                              "pass the folder a training run wrote, e.g. checkpoints/<stage>/last")
    state = read_state(folder)
    if verify:
        verify_checksums(folder, state)
    model_state = _load_weights(model_file)
    optimizer_state = None
    if "optimizer" in state and (folder / "optimizer.safetensors").is_file():
        optimizer_state = _unflatten_optimizer(_load_weights(folder / "optimizer.safetensors"), state.pop("optimizer"))
    return model_state, optimizer_state, state


def read_state(folder: Path) -> dict:
    """state.json as a dict; a missing or unparsable one is a `CheckpointError` naming it."""
    path = Path(folder) / "state.json"
    if not path.is_file():
        raise CheckpointMissing(f"{path}: missing, so the checkpoint is incomplete (a copy or save was cut short); "
                              f"{FIX_RETRAIN}")
    try:
        state = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}); {FIX_RETRAIN}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(state).__name__}; {FIX_RETRAIN}")
    return state


def verify_checksums(folder: Path, state: dict) -> None:
    """Compare every weight file with the SHA-256 recorded at save time (older checkpoints have none)."""
    for name, expected in (state.get("checksums") or {}).items():
        path = Path(folder) / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (state.json lists it); {FIX_RETRAIN}")
        if file_sha256(path) != expected:
            raise CheckpointError(f"{path}: checksum differs from the one saved in state.json (size "
                                  f"{path.stat().st_size} bytes: truncated or corrupted on disk); {FIX_RETRAIN}")


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes); {FIX_RETRAIN}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc}); {FIX_RETRAIN}") from exc


def check_stage(folder: str | Path, state: dict, expected: tuple[str, ...], tool: str) -> None:
    """Refuse a checkpoint of another stage (e.g. align given to eval_planning), naming both."""
    stage = state.get("stage")
    if stage is not None and stage not in expected:
        raise CheckpointError(f"{folder}: a {stage!r} checkpoint, but {tool} needs a {' or '.join(expected)} one; "
                              f"pass e.g. checkpoints/{expected[0]}/last")


def _is_complete(folder: Path) -> bool:
    try:
        verify_checksums(folder, read_state(folder))
    except CheckpointError:
        return False
    return (folder / "model.safetensors").is_file()


def recover_checkpoint(folder: str | Path) -> Path | None:
    """After a kill inside `save_checkpoint`'s renames: put the newest complete `<name>.tmp-*`/`.old-*` back.

    Returns the folder it recovered from (logged), or None when `folder` is present or nothing is left.
    """
    folder = Path(folder)
    if folder.exists():
        return None
    leftovers = sorted(folder.parent.glob(f"{folder.name}.tmp-*")) + sorted(folder.parent.glob(f"{folder.name}.old-*"))
    for candidate in leftovers:  # a complete tmp is newer than the old folder it was replacing
        if _is_complete(candidate):
            candidate.rename(folder)
            log.warning("recovered %s from %s (a run was killed while saving)", folder, candidate.name)
            return candidate
    return None


# --- run folders: one writer at a time, no silent overwrite -------------------------------------------------------

LOCK_FILE = ".lock"


class TrainingDiverged(RuntimeError):
    """A non-finite loss: the run stops and the last good checkpoint stays as it was."""


def check_finite_loss(loss: float, step: int, stage: str, out: Path) -> None:
    """Stop a run whose loss is nan/inf, saying where and why it usually happens."""
    if math.isfinite(loss):
        return
    raise TrainingDiverged(
        f"{stage}: the loss is {loss} at step {step}: training diverged, stopped without saving, so {out}/last "
        "keeps the last good weights. Usual causes: a learning rate too high for this batch (lower train.lr or "
        "raise warmup), no gradient clipping (train.grad_clip), or corrupt inputs (rebuild the caches); "
        "then --resume or start again with --overwrite")


def has_checkpoint(out: Path) -> bool:
    """`<out>/last` or a leftover of an interrupted save of it."""
    return (out / "last").exists() or any(out.glob("last.tmp-*")) or any(out.glob("last.old-*"))


def check_run_folder(out: str | Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a fresh run over a checkpoint unless told to (`--resume` continues, `--overwrite` replaces)."""
    out = Path(out)
    if resume and overwrite:
        raise CheckpointError("--resume and --overwrite contradict each other; pass one")
    if not resume and not overwrite and has_checkpoint(out):
        raise CheckpointError(f"{out}/last: this --out already holds a checkpoint; pass --resume to continue it, "
                              "--overwrite to train again from the start, or another --out")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


class RunLock:
    """`<out>/.lock` naming the pid that trains into `out`; a second run is refused, a dead holder's lock taken over."""

    def __init__(self, out: str | Path) -> None:
        self.path = Path(out) / LOCK_FILE
        self.held = False

    def acquire(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        holder = self._holder()
        if holder is not None and holder != os.getpid() and _pid_alive(holder):
            raise CheckpointError(f"{self.path}: process {holder} is training into {self.path.parent}; wait for it, "
                                  f"stop it (kill {holder}) or pass another --out")
        if holder is not None and holder != os.getpid():
            log.warning("%s: taking over the lock of process %d, which is no longer running", self.path, holder)
        tmp = self.path.with_name(f"{LOCK_FILE}.{os.getpid()}")
        tmp.write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
        os.replace(tmp, self.path)
        self.held = True
        return self

    def _holder(self) -> int | None:
        try:
            return int(json.loads(self.path.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def release(self) -> None:
        if self.held and self._holder() == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def truncate_log(path: Path, size: int | None) -> None:
    """Cut a training log back to its size at the checkpoint, so a resumed run does not repeat lines."""
    if size is not None and path.is_file() and path.stat().st_size > size:
        with path.open("r+b") as f:
            f.truncate(size)
