"""Write one stage and split for LLaMA-Factory: the sharegpt file, its dataset_info.json entry, a metadata file.

    examples, skipped = export_examples("instruct", records, frame_codes=None)
    rows, counts = sharegpt_rows(examples, records, tokens, options, dataroot)
    paths = write_export(out, dataset_name("instruct", "val", "text"), rows, meta)

Files in `out` (several exports can share one folder, as LLaMA-Factory's `dataset_dir`):
  <name>.json           the records (vla_world.export.sharegpt)
  dataset_info.json     one entry per exported name (merged into an existing file)
  <name>.meta.json      project version, stage, split, vision, token source, counts, the command, and the
                        LLaMA-Factory settings this data needs (template, add_special_tokens)
  <name>.special_tokens.yaml  when answers hold our special tokens: {token: meaning}, for the training
                        YAML's `new_special_tokens_config` (the world stage's 2 + codebook-size tokens)
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

import vla_world
from vla_world.data.records import SampleRecord
from vla_world.export.sharegpt import ShareGPTOptions, dataset_info_entry
from vla_world.model.tokenizer import STRUCTURE_TOKENS
from vla_world.model.visual_tokens import visual_token_names
from vla_world.qa.config import StageDataConfig
from vla_world.training.data import TrainingExample, stage_examples, world_examples
from vla_world.training.stages import STAGES

EXPORT_STAGES = ("align", "instruct", "motion", "world", "planning")


def dataset_name(stage: str, split: str, vision: str) -> str:
    return f"vla_world_{stage}_{split}_{vision}"


def export_examples(stage: str, records: list[SampleRecord], seed: int = 0,
                    frame_codes: dict[str, np.ndarray] | None = None,
                    qa: StageDataConfig | None = None) -> tuple[list[TrainingExample], dict]:
    """The stage's examples exactly as our trainer builds them (world: from `frame_codes`), and skips by reason."""
    if stage == "world":
        if frame_codes is None:
            raise ValueError("the world stage's answers are frame codes: pass the frame-code cache (--frame-codes)")
        examples, without_next = world_examples(records, frame_codes)
        return examples, {"no next keyframe": without_next} if without_next else {}
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r}: expected one of {list(EXPORT_STAGES)}")
    return stage_examples(stage, STAGES[stage].examples, records, seed=seed, qa=qa), {}


def special_tokens_used(rows: list[dict], stage: str, codebook_size: int | None) -> list[str]:
    """Our special tokens the answers hold (for LLaMA-Factory's `add_special_tokens`); world: the whole codebook."""
    text = "".join(m["value"] for r in rows for m in r["conversations"])
    found = [t for t in STRUCTURE_TOKENS if t in text]
    if stage == "world" and codebook_size:
        found += visual_token_names(codebook_size)  # every code, not only those this split uses
    return list(dict.fromkeys(found))  # <visual> / </visual> are structure tags and visual tokens both


def llamafactory_settings(vision: str, special_tokens: list[str]) -> dict:
    """The YAML keys this data needs (configs/llamafactory/*.yaml has the rest).

    The special tokens go in `add_special_tokens` (llamafactory 0.9.5, src/llamafactory/hparams/
    model_args.py; it turns `resize_vocab` on when any is new), or as a file in
    `new_special_tokens_config` (write_export writes it). FSDrive's vendored 0.9.2.dev0 named the key
    `new_special_tokens`; 0.9.5's argument parser refuses that name.
    """
    settings = {"template": "qwen2_vl" if vision == "images" else "qwen", "skip_special_tokens": False}
    if special_tokens:
        settings["add_special_tokens"] = ",".join(special_tokens)
        settings["resize_vocab"] = True
    return settings


def token_descriptions(special_tokens: list[str]) -> dict[str, str]:
    """{token: what it means}: LLaMA-Factory's `new_special_tokens_config` file (0.9.5; descriptions feed its
    optional `init_special_tokens: desc_init`, the default `noise_init` only reads the keys)."""
    meaning = {"<traj_start>": "start of the planned ego trajectory", "<traj_end>": "end of the planned ego trajectory",
               "<prediction>": "start of the agents' predicted motion", "</prediction>": "end of the predicted motion",
               "<visual>": "start of the imagined next front-camera frame", "</visual>": "end of the imagined frame"}
    return {t: meaning.get(t) or f"visual code {t[5:-1]} of the next front-camera frame" for t in special_tokens}


@dataclass(frozen=True)
class ExportRun:
    """What the metadata says about where an export came from."""

    stage: str
    split: str
    dataroot: str
    tokens: str  # the token source's label (vla_world.inference.TokenSource.label)
    ground_truth: bool  # perception text / object lines from ground truth (--tokens oracle)
    command: str  # the command line that wrote the export


def export_metadata(run: ExportRun, options: ShareGPTOptions, counts: dict, rows: list[dict],
                    codebook_size: int | None) -> dict:
    """The <name>.meta.json of one export: provenance, counts and the LLaMA-Factory settings it needs."""
    special = special_tokens_used(rows, run.stage, codebook_size)
    return {"project": "vla_world", "version": vla_world.__version__, "format": "llamafactory",
            "dataset": dataset_name(run.stage, run.split, options.vision), "stage": run.stage, "split": run.split,
            "dataroot": run.dataroot, "vision": options.vision, "tokens": run.tokens,
            "ground_truth_perception": run.ground_truth, "packed": options.pack, "seed": options.seed,
            "max_agents": options.max_agents, "kinematic_prior": options.kinematic_prior, "counts": counts,
            "command": run.command, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "llamafactory": llamafactory_settings(options.vision, special)}


def check_image_markers(rows: list[dict]) -> None:
    """Refuse text that LLaMA-Factory would misread: a stray `<image>` in text mode is counted as an image."""
    for row in rows:
        markers = sum(len(re.findall(r"<image>", m["value"])) for m in row["conversations"])
        if markers != len(row.get("images", [])):
            raise ValueError(f"record {row['id']}: {markers} <image> markers but {len(row.get('images', []))} images")


def write_json_atomic(path: Path, data) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def write_export(out: str | Path, name: str, rows: list[dict], meta: dict) -> dict[str, Path]:
    """Write the records, merge the dataset_info.json entry, write the metadata; returns the paths."""
    check_image_markers(rows)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"data": out / f"{name}.json", "dataset_info": out / "dataset_info.json", "meta": out / f"{name}.meta.json"}
    info = json.loads(paths["dataset_info"].read_text()) if paths["dataset_info"].is_file() else {}
    info[name] = dataset_info_entry(paths["data"].name, images=any("images" in r for r in rows))
    write_json_atomic(paths["data"], rows)
    write_json_atomic(paths["dataset_info"], info)
    special = meta.get("llamafactory", {}).get("add_special_tokens")
    if special:
        paths["special_tokens"] = out / f"{name}.special_tokens.yaml"
        tmp = paths["special_tokens"].with_suffix(".yaml.tmp")
        tmp.write_text(yaml.safe_dump(token_descriptions(special.split(",")), sort_keys=False, allow_unicode=True))
        os.replace(tmp, paths["special_tokens"])
    write_json_atomic(paths["meta"], meta)
    return paths
