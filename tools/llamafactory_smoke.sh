#!/usr/bin/env bash
# make llamafactory-smoke: prove the LLaMA-Factory export trains with LLaMA-Factory itself, on CPU.
#   1. a venv of its own (.venv-llamafactory; never the project's .venv: llamafactory 0.9.5 pins
#      transformers<=5.6, peft<=0.18.1, trl<=0.24, see docs/export.md) with llamafactory==0.9.5, torch
#      from the CPU wheel under requirements/constraints.txt, its CUDA-only torchvision/torchaudio removed
#      and an empty torchaudio module in their place (mm_plugin.py imports it; nothing here calls it);
#   2. the tiny planning data, train split, --vision text, perception from $TOKENS (not ground truth);
#   3. the LLM + tokenizer of $CHECKPOINT as a Hugging Face folder (a fresh tiny one if it is missing);
#   4. llamafactory-cli train configs/llamafactory/smoke_lora_cpu.yaml (a few LoRA steps), then the losses.
# Variables: DATA TOKENS CHECKPOINT OUT LF_VENV PY (defaults below). Not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
VPY=${VPY:-.venv/bin/python}
LF_VENV=${LF_VENV:-.venv-llamafactory}
LF_VERSION=0.9.5
DATA=${DATA:-data/mini_world}
TOKENS=${TOKENS:-cache/tokens/train.safetensors}
CHECKPOINT=${CHECKPOINT:-checkpoints/planning/last}
OUT=${OUT:-outputs/llamafactory-smoke}
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
start=$(date +%s)
if [ "$TOKENS" != oracle ] && [ ! -e "$TOKENS" ]; then
  echo "llamafactory-smoke: no $TOKENS; run \`make demo\` first (it writes cache/tokens/ and checkpoints/), or set" \
       "TOKENS=<token cache file | perception checkpoint folder>"; exit 1
fi

if [ ! -f "$LF_VENV/.installed-$LF_VERSION" ]; then
  echo "== installing llamafactory $LF_VERSION into $LF_VENV"
  test -x "$LF_VENV/bin/python" || "$PY" -m venv "$LF_VENV"
  "$LF_VENV/bin/python" -m pip install -q --upgrade "pip>=23"
  "$LF_VENV/bin/python" -m pip install -q -c requirements/constraints.txt "torch==2.13.0"
  "$LF_VENV/bin/python" -m pip install -q -c requirements/constraints.txt "llamafactory==$LF_VERSION"
  "$LF_VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio
  site=$("$LF_VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  mkdir -p "$site/torchaudio"
  echo '"""Empty stand-in: the CUDA-only torchaudio wheel breaks torch 2.13+cpu; llamafactory imports it for audio only."""' \
    > "$site/torchaudio/__init__.py"
  touch "$LF_VENV/.installed-$LF_VERSION"
fi

echo "== every configs/llamafactory/*.yaml uses only keys llamafactory $LF_VERSION knows (a misspelt key is an error there)"
"$LF_VENV/bin/python" - configs/llamafactory/*.yaml <<'PYEOF'
import sys, yaml
from llamafactory.hparams.parser import _TRAIN_ARGS  # the dataclasses llamafactory-cli train parses into
known = set().union(*(cls.__dataclass_fields__ for cls in _TRAIN_ARGS))
unknown = {path: sorted(set(yaml.safe_load(open(path))) - known) for path in sys.argv[1:]}
for path, keys in unknown.items():
    print(f"   {path}: {'ok' if not keys else 'unknown keys: ' + ', '.join(keys)}")
sys.exit(1 if any(unknown.values()) else 0)
PYEOF

echo "== exporting the planning train split (--vision text, tokens: $TOKENS)"
rm -rf "$OUT/data" "$OUT/run"
"$VPY" tools/export_data.py --format llamafactory --stage planning --split train --vision text \
  --tokens "$TOKENS" --dataroot "$DATA" --out "$OUT/data"

echo "== saving the base model"
if [ -f "$CHECKPOINT/vla.json" ]; then
  "$VPY" tools/export_llm.py --checkpoint "$CHECKPOINT" --out "$OUT/model"
else
  echo "   ($CHECKPOINT missing: a fresh tiny LLM and tokenizer)"
  "$VPY" tools/export_llm.py --fresh "$OUT/data/vla_world_planning_train_text.json" --out "$OUT/model"
fi

echo "== llamafactory-cli train (LoRA, CPU)"
mkdir -p "$OUT/run"
"$LF_VENV/bin/llamafactory-cli" train configs/llamafactory/smoke_lora_cpu.yaml \
  model_name_or_path="$OUT/model" dataset_dir="$OUT/data" output_dir="$OUT/run" 2>&1 | tee "$OUT/train.log"
# LLaMA-Factory skips a malformed record with only a warning (data/converter.py); none may be skipped
if grep -q "abnormal example" "$OUT/train.log"; then
  echo "llamafactory-smoke: FAILED: LLaMA-Factory skipped exported records (see $OUT/train.log)"; exit 1
fi

"$VPY" - "$OUT/run/trainer_log.jsonl" "$start" <<'PYEOF'
import json, sys, time
logs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
losses = [(e["current_steps"], e["loss"]) for e in logs if "loss" in e]
print("llamafactory-smoke: loss per step " + ", ".join(f"{s}: {l:.3f}" for s, l in losses))
print(f"llamafactory-smoke: first {losses[0][1]:.3f} -> last {losses[-1][1]:.3f}; "
      f"wall time {time.time() - float(sys.argv[2]):.0f} s (install included when it ran)")
PYEOF
