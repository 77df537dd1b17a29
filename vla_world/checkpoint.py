"""Checkpoints as safetensors plus JSON, written atomically, so a crash never leaves half a file.

A checkpoint is a folder:
    model.safetensors      trainable and frozen weights (whatever the caller passes)
    optimizer.safetensors  optional: flattened optimizer state tensors
    state.json             step, epoch, RNG states, optimizer scalars, metrics, free-form meta
    config.yaml            the config that produced it (written by the caller via save_config)

The folder is first written under `<name>.tmp-<pid>` and then renamed into place; a previous
folder of the same name is replaced only after the new one is complete.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file


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
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    tensors = {k: v.detach().contiguous().cpu() for k, v in model_state.items()}
    save_file(tensors, str(tmp / "model.safetensors"))
    meta = dict(state or {})
    if optimizer_state is not None:
        opt_tensors, opt_scalars = _flatten_optimizer(optimizer_state)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        meta["optimizer"] = opt_scalars
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


def load_checkpoint(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict | None, dict]:
    """Return (model_state, optimizer_state or None, state dict) from a checkpoint folder."""
    folder = Path(folder)
    model_file = folder / "model.safetensors"
    if not model_file.is_file():
        raise FileNotFoundError(f"{model_file}: no checkpoint here (expected model.safetensors + state.json); "
                                "pass the folder a training run wrote, e.g. checkpoints/<stage>/last")
    model_state = load_file(str(model_file))
    state = json.loads((folder / "state.json").read_text()) if (folder / "state.json").is_file() else {}
    optimizer_state = None
    if "optimizer" in state and (folder / "optimizer.safetensors").is_file():
        optimizer_state = _unflatten_optimizer(load_file(str(folder / "optimizer.safetensors")), state.pop("optimizer"))
    return model_state, optimizer_state, state
