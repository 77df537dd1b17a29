"""One switch for where tokens come from: `token_source: oracle | model` in the perception config.

    tokens = tokens_for_records(records, cfg, dataroot, checkpoint=None, progress=True)
    # {sample_token: PerceptionTokens}; oracle needs no images, model needs a trained checkpoint
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from perception.config import PerceptionConfig
from perception.oracle import oracle_tokens
from perception.tokens import PerceptionTokens
from vla_world.data.records import SampleRecord


def tokens_for_records(records: list[SampleRecord], cfg: PerceptionConfig, dataroot: str | Path | None = None,
                       checkpoint: str | Path | None = None, progress: bool = True) -> dict[str, PerceptionTokens]:
    if cfg.token_source == "oracle":
        return {r.sample_token: oracle_tokens(r, cfg) for r in tqdm(records, desc="oracle tokens", disable=not progress)}
    if checkpoint is None or dataroot is None:
        raise ValueError("token_source: model needs a perception checkpoint (e.g. checkpoints/perception/last) and "
                         "the dataroot of the camera images; or set token_source: oracle")
    from perception.inference import model_tokens
    from perception.inputs import image_cache
    from perception.train import load_perception_model

    model, model_cfg = load_perception_model(checkpoint)
    return model_tokens(model, records, image_cache(dataroot, model_cfg.model), model_cfg, progress)
