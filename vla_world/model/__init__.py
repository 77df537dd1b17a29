"""The VLA model: tokenizer, LLM presets, projectors, the sequence builder and the spliced model.

    from vla_world.model import VLAModel, SequenceBuilder

Names load on first use (PEP 562), so `vla_world.model.presets` (read by every stage config)
does not pull in torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"EncodedSample": "sequence", "FocusNotDetected": "sequence", "PromptOptions": "sequence",
            "SequenceBuilder": "sequence", "VLAModel": "vla"}
__all__ = list(_EXPORTS)  # resolved lazily by __getattr__


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vla_world.model' has no attribute {name!r}")
    return getattr(importlib.import_module(f"vla_world.model.{_EXPORTS[name]}"), name)
