"""The VLA model: tokenizer, LLM presets, projectors, the sequence builder and the spliced model.

    from vla_world.model import VLAModel, SequenceBuilder

Names load on first use (PEP 562), so `vla_world.model.presets` (read by every stage config)
does not pull in torch and transformers.
"""

from __future__ import annotations

from vla_world.lazy import lazy_exports

_EXPORTS = {"EncodedSample": "sequence", "FocusNotDetected": "sequence", "PromptOptions": "sequence",
            "SequenceBuilder": "sequence", "VLAModel": "vla"}
__all__ = list(_EXPORTS)  # resolved lazily by __getattr__

__getattr__ = lazy_exports(__name__, _EXPORTS)
