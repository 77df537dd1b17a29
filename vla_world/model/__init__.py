"""The VLA model: tokenizer, LLM presets, projectors, the sequence builder and the spliced model.

    from vla_world.model import VLAModel, SequenceBuilder
"""

from vla_world.model.sequence import (
    EncodedSample,
    FocusNotDetected,
    PromptOptions,
    SequenceBuilder,
)
from vla_world.model.vla import VLAModel

__all__ = ["EncodedSample", "FocusNotDetected", "PromptOptions", "SequenceBuilder", "VLAModel"]
