"""Stage data for other trainers: LLaMA-Factory's sharegpt files (`llamafactory`), written by tools/export_data.py.

Why a package of its own: the writers read the stage example builders (vla_world.training.data),
the prompt text (vla_world.model.sequence) and the QA packing (vla_world.model.packing), so they sit
above training; each target format is one module, and the tool only parses flags and writes files.

    perception_text  perception tokens -> text lines (detected agents, map summary, a focus object)
    sharegpt         one stage's examples -> sharegpt conversations + the dataset_info.json entry
    llamafactory     one stage and split as files: records, dataset_info.json, metadata, special tokens
    hf_folder        a checkpoint's LLM + tokenizer as a plain Hugging Face folder (the trainer's base model)

docs/export.md has the commands.
"""
