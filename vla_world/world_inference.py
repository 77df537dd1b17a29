"""The world model's inference: a checkpoint imagines the next keyframe's CAM_FRONT as frame codes.

    codes = imagine_codes("checkpoints/world/last", split="val", dataroot="data/mini_world")
    # {sample_token: (K,) int64 codes of the imagined NEXT frame}

For every record of the split that has a next keyframe (the samples the world stage trains on and
tools/eval_world.py can score), the prompt is the world stage's (planner input + perception tokens
+ WORLD_QUESTION) and the answer's `<visual>` block is decoded constrained
(`vla_world.visual_decoding`: exactly K codes, only code tokens), in batches with the KV cache.
The codes index the frame tokenizer's codebook (perception/frame_codes.py) and decode with it.
Tokens come from `tokens`: "auto" = as the checkpoint was trained (`vla_world.inference.resolve_token_source`),
"oracle", or a token cache file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from vla_world.data.planner_input import planner_input
from vla_world.inference import load_source_tokens, resolve_token_source
from vla_world.model.sequence import WORLD_QUESTION
from vla_world.model.vla import VLAModel
from vla_world.visual_decoding import imagine_codes_batch, require_visual

AUTO = "auto"


def imagine_codes(checkpoint: str | Path, split: str, dataroot: str, tokens: str = AUTO,
                  max_samples: int | None = None, batch_size: int = 8, progress: bool = True
                  ) -> dict[str, np.ndarray]:
    """{current sample token: (K,) int64 codes of the imagined next frame} for the split's samples with a next keyframe.

    `max_samples` keeps the first that many of them (in record order).
    """
    from vla_world.data import load_records

    model = VLAModel.from_folder(checkpoint).eval()
    require_visual(model)
    model.merge_lora()  # one plain output layer: the code rows are read directly
    records = [r for r in load_records(dataroot, split=split, progress=False) if r.has_next_frame]
    records = records[:max_samples] if max_samples is not None else records
    source = resolve_token_source(checkpoint, split, None if tokens == AUTO else tokens)
    token_map = load_source_tokens(source, checkpoint, records, dataroot)
    builder = model.sequence_builder
    prompts = [builder.encode(planner_input(r), token_map[r.sample_token], WORLD_QUESTION) for r in records]
    out: dict[str, np.ndarray] = {}
    for start in tqdm(range(0, len(prompts), batch_size), desc="imagine", disable=not progress):
        chunk = prompts[start:start + batch_size]
        codes = imagine_codes_batch(model, [s.input_ids for s in chunk], [s.features for s in chunk])
        out.update({s.sample_token: row for s, row in zip(chunk, codes)})
    return out
