"""VLA-World's planning verifiers as an EasyR1 reward function (`planning.rewards`, docs/rewards.md).

Why a file of its own: EasyR1 loads a reward function by path, not by package
(`worker.reward.reward_function=planning/easyr1_reward.py:compute_score`; its
`verl/workers/reward/function.py` runs `importlib.util.spec_from_file_location`), so this file
must work when executed on its own: it puts this repository's root on `sys.path` (at the end, so
it shadows nothing) and imports only numpy and the leaf module `planning.rewards`.

Interface: EasyR1's batch reward function, introduced in hiyouga/EasyR1 commit b637de8
(2025-11-16, "[reward] upgrade reward func") and unchanged up to b44b311 (2026-07-30, version
0.3.3.dev0), the version this was checked against; releases up to v0.3.2 call the older
`compute_score(predict_str, ground_truth)` and are not supported.

  in:  [{"response": str, "response_length": int, "ground_truth": str}, ...]
       `ground_truth` is the `answer` column of tools/export_data.py --format easyr1 (a
       `RewardTarget` as JSON);
  out: [{"overall": float, "format": ..., "collision": ..., "accuracy": ...}, ...]
       plus "grounding" and "consistency" when `structured=True` (EasyR1 averages every key over
       the batch, so terms that do not apply are left out rather than None).

Settings: `worker.reward.skip_special_tokens=false` (otherwise the decoder drops `<traj_start>`
and the other tags, and every answer fails the format), `worker.reward.reward_function_kwargs`
holds `RewardConfig` fields, e.g. `{structured: true, collision_weight: 0.5}`.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from planning.rewards import RewardConfig, RewardTarget, score_answer
except ModuleNotFoundError:  # loaded by path from outside the repository: make the repository importable
    sys.path.append(str(Path(__file__).resolve().parents[1]))
    from planning.rewards import RewardConfig, RewardTarget, score_answer

REWARD_NAME = "vla_world_planning"
REWARD_TYPE = "batch"


def compute_score(reward_inputs: list[dict], **config) -> list[dict[str, float]]:
    """One EasyR1 score dict per response; `config` are `RewardConfig` fields (reward_function_kwargs)."""
    settings = RewardConfig(**config)
    targets: dict[str, RewardTarget] = {}  # the G responses of a prompt share one parsed target (and its grid)
    scores = []
    for item in reward_inputs:
        truth = item["ground_truth"]
        key = truth if isinstance(truth, str) else repr(truth)
        if key not in targets:
            targets[key] = RewardTarget.from_json(truth)
        scores.append(score_answer(item["response"], targets[key], settings).as_easyr1())
    return scores
