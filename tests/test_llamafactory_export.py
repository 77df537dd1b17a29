"""tools/export_data.py --format llamafactory: sharegpt records LLaMA-Factory reads, built from our own examples.

No llamafactory import here (it lives in its own venv; `make llamafactory-smoke` trains on the export).
The rules checked are LLaMA-Factory's (data/README.md, src/llamafactory/data/converter.py of 0.9.5):
user/assistant turns alternate, as many `<image>` markers as images, `formatting` spelt right,
`system` mapped. Perception text must follow the token source, never ground truth unless asked.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.tool_helpers import load_tool

QA_STAGES = ("align", "instruct", "motion")
STAGES = (*QA_STAGES, "planning")
SHIFT_M = 100.0  # the cache's agents sit this far right of the GT agents, so GT positions cannot pass for them


def shifted_tokens(record):
    """Oracle tokens whose agents are moved, re-classed and given velocities GT does not have."""
    from vla_world.training.data import oracle_token_map

    tokens = oracle_token_map([record])[record.sample_token]
    boxes = tokens.agent_boxes.clone()
    boxes[:, 0] += SHIFT_M
    return dataclasses.replace(tokens, agent_boxes=boxes, agent_classes=(tokens.agent_classes + 1) % 10,
                               agent_velocities=torch.full((len(boxes), 2), 7.25))


@pytest.fixture(scope="module")
def cache(mini_records, tmp_path_factory) -> Path:
    from perception.tokens import save_token_cache

    path = tmp_path_factory.mktemp("tokens") / "val.safetensors"
    save_token_cache(path, {r.sample_token: shifted_tokens(r) for r in mini_records["val"]})
    return path


def export(mini_world, out: Path, stage: str, tokens: str, *extra: str) -> None:
    args = ["--format", "llamafactory", "--stage", stage, "--split", "val", "--tokens", tokens,
            "--dataroot", str(mini_world), "--out", str(out), "--quiet", *extra]
    assert load_tool("export_data").main(args) == 0


@pytest.fixture(scope="module")
def text_export(mini_world, cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lf_text")
    for stage in STAGES:
        export(mini_world, out, stage, str(cache), "--vision", "text")
    return out


def rows(out: Path, stage: str, vision: str = "text") -> list[dict]:
    return json.loads((out / f"vla_world_{stage}_val_{vision}.json").read_text())


def meta(out: Path, stage: str, vision: str = "text") -> dict:
    return json.loads((out / f"vla_world_{stage}_val_{vision}.meta.json").read_text())


@pytest.mark.parametrize("stage", STAGES)
def test_records_alternate_roles_and_carry_the_system_prompt(text_export, stage):
    from vla_world.model.sequence import SYSTEM_PROMPT

    records = rows(text_export, stage)
    assert records, f"no {stage} records"
    for row in records:
        roles = [m["from"] for m in row["conversations"]]
        assert roles == ["human", "gpt"] * (len(roles) // 2) and len(roles) >= 2
        assert row["system"] == SYSTEM_PROMPT and "images" not in row
        assert all("<image>" not in m["value"] and m["value"] for m in row["conversations"])


def test_dataset_info_names_every_export_as_sharegpt(text_export):
    info = json.loads((text_export / "dataset_info.json").read_text())
    assert set(info) == {f"vla_world_{s}_val_text" for s in STAGES}
    for name, entry in info.items():
        assert entry == {"file_name": f"{name}.json", "formatting": "sharegpt",
                         "columns": {"messages": "conversations", "system": "system"},
                         "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}}
        assert (text_export / entry["file_name"]).is_file()


@pytest.mark.parametrize("stage", STAGES)
def test_round_trip_gives_back_our_examples(text_export, mini_records, cache, stage):
    """Every (sample, question, answer) the trainer builds is exported once, less questions about undetected agents."""
    from perception.tokens import load_token_cache
    from vla_world.export.sharegpt import has_focus, question_answer_pairs
    from vla_world.training.data import stage_examples
    from vla_world.training.stages import STAGES as SPECS

    tokens = load_token_cache(cache)
    built = stage_examples(stage, SPECS[stage].examples, mini_records["val"])
    kept = [e for e in built if has_focus(tokens[e.sample_token], e)]
    exported = [(row["sample_token"], q, a) for row in rows(text_export, stage) for q, a in question_answer_pairs(row)]
    assert Counter(exported) == Counter((e.sample_token, e.question, e.answer) for e in kept)
    counts = meta(text_export, stage)["counts"]
    assert counts["turns"] == len(kept) and counts["examples"] == len(built)
    assert counts["dropped"] == ({"focus agent not detected": len(built) - len(kept)} if len(kept) < len(built) else {})


def test_instruct_is_packed_and_keeps_detailed_and_concise_apart(text_export, mini_records, cache):
    from perception.tokens import load_token_cache
    from vla_world.export.sharegpt import has_focus, question_answer_pairs
    from vla_world.model.packing import shuffled_conversations
    from vla_world.training.data import stage_examples

    built = stage_examples("instruct", "qa", mini_records["val"])
    granularity = {}
    for e in built:
        granularity.setdefault((e.sample_token, e.question, e.answer), set()).add(e.meta["granularity"])
    tokens = load_token_cache(cache)
    trainer = [[(e.question, e.answer) for e in group if has_focus(tokens[token], e)]
               for token, group in shuffled_conversations(built, seed=0)]
    assert [question_answer_pairs(r) for r in rows(text_export, "instruct")] == [t for t in trainer if t]  # same turns, same order
    records = rows(text_export, "instruct")
    assert meta(text_export, "instruct")["packed"] and len(records) <= 2 * len(mini_records["val"])
    assert max(len(r["conversations"]) for r in records) > 2  # multi-turn
    for row in records:
        kinds = [granularity[(row["sample_token"], q, a)] for q, a in question_answer_pairs(row)]
        assert set.intersection(*kinds), f"{row['id']} mixes detailed and concise answers"
        later = row["conversations"][2::2]  # follow-up turns: Object line + question only
        assert all("Ego states" not in m["value"] and len(m["value"].split("\n")) <= 2 for m in later)


def test_text_follows_the_token_cache_not_ground_truth(text_export, mini_records, cache):
    from planning.codec import format_number
    from vla_world.training.data import oracle_token_map

    truth = oracle_token_map(mini_records["val"])  # the GT agents perception would see, unshifted

    def points(boxes, shift=0.0) -> list[str]:
        return sorted(f"({format_number(x + shift)},{format_number(y)})" for x, y in boxes[:, :2].tolist())

    checked = 0
    for row in rows(text_export, "planning"):
        lines = row["conversations"][0]["value"].split("\n")
        assert lines[0].startswith("Detected agents") and "velocity m/s" in lines[0]
        agents = [line for line in lines if line.startswith("- ")]
        listed = sorted(re.search(r" at (\([^)]*\))", line).group(1) for line in agents)
        gt = truth[row["sample_token"]].agent_boxes
        assert listed == points(gt, SHIFT_M)  # the cache's agents (GT moved), all of them
        assert not set(listed) & set(points(gt))  # and not one GT position
        assert all(line.endswith("velocity (7.25,7.25)") for line in agents)
        checked += len(agents)
    assert checked > 0
    m = meta(text_export, "planning")
    assert m["ground_truth_perception"] is False and m["tokens"] == f"token cache: {cache}"
    assert "--tokens " + str(cache) in m["command"] and m["version"] and m["split"] == "val"


def test_oracle_text_says_so_in_the_metadata(mini_world, tmp_path):
    export(mini_world, tmp_path, "planning", "oracle")
    m = meta(tmp_path, "planning")
    assert m["ground_truth_perception"] is True and m["tokens"].startswith("oracle (ground truth)")


def test_images_mode_lists_six_cameras_in_order(mini_world, mini_records, cache, tmp_path):
    from vla_world.data.records import CAMERAS

    export(mini_world, tmp_path, "motion", str(cache), "--vision", "images")
    info = json.loads((tmp_path / "dataset_info.json").read_text())["vla_world_motion_val_images"]
    assert info["columns"]["images"] == "images" and info["formatting"] == "sharegpt"
    by_token = {r.sample_token: r for r in mini_records["val"]}
    for row in rows(tmp_path, "motion", "images"):
        markers = sum(m["value"].count("<image>") for m in row["conversations"])
        assert markers == len(row["images"]) == len(CAMERAS)
        first = row["conversations"][0]["value"].split("\n")
        assert first[:6] == [f"{camera}: <image>" for camera in CAMERAS]
        assert [Path(p) for p in row["images"]] == [(mini_world / p).resolve() for p in by_token[row["sample_token"]].camera_paths]
        assert all(Path(p).is_file() for p in row["images"])
        assert not any(line.startswith("- ") for line in first)  # no perception text beside the images
        assert first[-2].startswith("Object: the ")  # the focus agent, by its detected box
    assert meta(tmp_path, "motion", "images")["llamafactory"]["template"] == "qwen2_vl"


def test_world_answers_are_the_next_keyframes_codes_as_special_tokens(mini_world, mini_records, cache, tmp_path):
    from perception.frame_codes import FrameCodeMeta, save_frame_codes

    records = mini_records["val"]
    rng = np.random.default_rng(0)
    codes = {r.sample_token: rng.integers(0, 16, 6) for r in records}
    path = tmp_path / "frames.safetensors"
    save_frame_codes(path, codes, FrameCodeMeta(16, 6, (2, 3), "test", (32, 48)))
    export(mini_world, tmp_path, "world", str(cache), "--frame-codes", str(path))
    following = {(r.scene_token, r.frame_index): r.sample_token for r in records}
    exported = rows(tmp_path, "world")
    for row in exported:
        record = next(r for r in records if r.sample_token == row["sample_token"])
        target = codes[following[(record.scene_token, record.frame_index + 1)]]
        assert row["conversations"][1]["value"] == "<visual>" + "".join(f"<vis_{c}>" for c in target) + "</visual>"
    scenes = len({r.scene_token for r in records})
    m = meta(tmp_path, "world")
    assert len(exported) == len(records) - scenes and m["counts"]["skipped_samples"] == {"no next keyframe": scenes}
    assert m["llamafactory"]["add_special_tokens"].split(",") == ["<visual>", "</visual>", *(f"<vis_{i}>" for i in range(16))]
    assert m["llamafactory"]["resize_vocab"] is True
    described = yaml.safe_load((tmp_path / "vla_world_world_val_text.special_tokens.yaml").read_text())
    assert list(described) == m["llamafactory"]["add_special_tokens"].split(",") and "code 3 " in described["<vis_3>"]


def test_perception_text_golden_case():
    from perception.tokens import PerceptionTokens
    from vla_world.export.perception_text import object_line, perception_lines
    from vla_world.model.sequence import FocusNotDetected

    tokens = PerceptionTokens(
        scene=torch.zeros(1, 4), agents=torch.zeros(2, 4), map=torch.zeros(2, 4),
        agent_boxes=torch.tensor([[5.0, 20.0, 0, 2, 4, 1.5, 0], [-1.5, 3.25, 0, 0.6, 0.6, 1.8, 0]]),
        agent_classes=torch.tensor([0, 5]), agent_track_ids=torch.tensor([11, 12]),
        map_types=torch.tensor([0, 1]), map_points=torch.tensor([[[-1.0, -5.0], [-1.0, 5.0]], [[4.0, 0.0], [4.0, 9.0]]]),
        agent_velocities=torch.tensor([[0.0, 5.0], [-0.004, 1.0]]))
    assert perception_lines(tokens, max_agents=1) == [
        "Detected agents (position x right, y forward, m; velocity m/s): 2, the nearest 1 listed",
        "- pedestrian at (-1.50,3.25), velocity (0.00,1.00)",
        ("Map elements: 1 lane_divider, 1 road_boundary; nearest lane_divider at (-1.00,-5.00), "
         "nearest road_boundary at (4.00,0.00)")]
    assert object_line(tokens, 11) == "Object: the car at (5.00,20.00), velocity (0.00,5.00)"
    assert object_line(tokens, None) is None
    with pytest.raises(FocusNotDetected):
        object_line(tokens, 99)
    no_velocity = dataclasses.replace(tokens, agent_velocities=None)
    assert perception_lines(no_velocity)[0].endswith("no velocities in this token source): 2")
    assert perception_lines(no_velocity)[1] == "- pedestrian at (-1.50,3.25)"


def test_a_bad_source_names_the_flag(mini_world, tmp_path):
    with pytest.raises(SystemExit, match="--frame-codes"):
        export(mini_world, tmp_path, "world", "oracle", "--frame-codes", str(tmp_path / "none.safetensors"))
    with pytest.raises(SystemExit):  # argparse: easyr1 has the planning stage only
        load_tool("export_data").main(["--format", "easyr1", "--stage", "instruct", "--split", "val", "--tokens",
                                       "oracle", "--out", str(tmp_path)])


def test_fresh_llm_folder_loads_as_a_plain_hugging_face_model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from vla_world.export.hf_folder import fresh_llm_folder

    folder = fresh_llm_folder(["Plan the ego trajectory. <traj_start>[(0.00,1.00)]<traj_end>"] * 20, tmp_path / "m",
                              vocab_size=300)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    assert model.config.vocab_size >= len(tokenizer) and tokenizer.convert_tokens_to_ids("<traj_start>") >= 0
    assert model.config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_a_stray_image_marker_is_refused(tmp_path):
    from vla_world.export.llamafactory import write_export

    row = {"id": "s/0", "sample_token": "s", "system": "",
           "conversations": [{"from": "human", "value": "What is <image>?"}, {"from": "gpt", "value": "a word"}]}
    with pytest.raises(ValueError, match="1 <image> markers but 0 images"):
        write_export(tmp_path, "x", [row], {})
    assert not (tmp_path / "x.json").exists()


def test_a_stage_config_sets_packing_and_seed(mini_world, cache, tmp_path):
    config = tmp_path / "motion.yaml"
    config.write_text("stage: motion\ndata:\n  pack_questions: true\ntrain:\n  seed: 3\n")
    export(mini_world, tmp_path, "motion", str(cache), "--config", str(config))
    m = meta(tmp_path, "motion")
    assert m["packed"] is True and m["seed"] == 3 and m["counts"]["conversations"] < m["counts"]["turns"]
    with pytest.raises(SystemExit, match="--config"):
        export(mini_world, tmp_path, "motion", str(cache), "--config", str(tmp_path / "missing.yaml"))
