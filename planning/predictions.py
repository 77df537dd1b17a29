"""Prediction files: the hand-over between a planner (baseline, VLA model) and the evaluator.

Every trajectory is six (x, y) waypoints at t = 0.5 .. 3.0 s, metres, in the current LiDAR_TOP
frame of its keyframe (x right, y forward). Two formats, chosen by the file suffix:

  * JSON  {sample_token: {"trajectory": [[x, y] * 6], "text": "raw model output"}}
          ("text" optional; "trajectory" may be left out when "text" is given), or the short
          form {sample_token: [[x, y] * 6]}. `save_predictions` rounds to 0.1 mm (4 decimals).
  * NPZ   arrays `tokens` (N,) str, `trajectories` (N, 6, 2) float, optional `texts` (N,) str;
          a row of NaN with a text means "parse the text".

Entries that carry only raw text are parsed with `planning.codec.parse_trajectory`; the ones
that do not parse (and non-finite trajectories) are kept as `failures` with the reason, so the
evaluator can count them instead of dropping them. A file that is malformed as a file (wrong
shapes, wrong types) raises `PredictionFileError` naming the file, the token and the fix.

    save_predictions("outputs/baselines/kinematic.json", {token: wp})
    preds = load_predictions("outputs/baselines/kinematic.json")
    preds.trajectories[token]  # (6, 2) float64
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from planning.codec import parse_trajectory
from vla_world.data.records import NUM_FUTURE

SUFFIXES = (".json", ".npz")


class PredictionFileError(ValueError):
    """A predictions file that cannot be read as one (not: a sample whose text did not parse)."""


@dataclass
class Predictions:
    """One planner's answers for a split; every token appears in exactly one of the two dicts."""

    trajectories: dict[str, np.ndarray] = field(default_factory=dict)  # token -> (6, 2) LiDAR frame, m
    failures: dict[str, str] = field(default_factory=dict)  # token -> why no trajectory (parse error, ...)
    texts: dict[str, str] = field(default_factory=dict)  # token -> raw model text, where given

    @property
    def tokens(self) -> set[str]:
        return set(self.trajectories) | set(self.failures)


def save_predictions(path: str | Path, trajectories: dict[str, np.ndarray], texts: dict[str, str] | None = None) -> Path:
    """Write JSON or NPZ by suffix; tokens only in `texts` are stored as text to be parsed on load."""
    path = Path(path)
    texts = texts or {}
    tokens = sorted(set(trajectories) | set(texts))
    checked = {t: _checked_waypoints(trajectories[t], path, t) for t in trajectories}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        entries = {t: _json_entry(checked.get(t), texts.get(t)) for t in tokens}
        path.write_text(json.dumps(entries, indent=1))
    elif path.suffix == ".npz":
        stack = np.full((len(tokens), NUM_FUTURE, 2), np.nan)
        for i, t in enumerate(tokens):
            if t in checked:
                stack[i] = checked[t]
        arrays = {"tokens": np.array(tokens, dtype=str), "trajectories": stack}
        if texts:
            arrays["texts"] = np.array([texts.get(t, "") for t in tokens], dtype=str)
        np.savez_compressed(path, **arrays)
    else:
        raise PredictionFileError(f"{path}: unknown suffix {path.suffix!r}; use one of {SUFFIXES}")
    return path


def load_predictions(path: str | Path) -> Predictions:
    """Read a JSON/NPZ predictions file (see module doc); parse text-only entries with the codec."""
    path = Path(path)
    if not path.is_file():
        raise PredictionFileError(f"{path}: predictions file not found")
    if path.suffix == ".json":
        return _load_json(path)
    if path.suffix == ".npz":
        return _load_npz(path)
    raise PredictionFileError(f"{path}: unknown suffix {path.suffix!r}; use one of {SUFFIXES}")


def predictions_from_texts(texts: dict[str, str]) -> Predictions:
    """Parse raw model outputs {token: text} with the codec (for in-process inference)."""
    preds = Predictions()
    for token, text in texts.items():
        _add(preds, token, None, text, "model outputs")
    return preds


def _json_entry(waypoints: np.ndarray | None, text: str | None) -> dict:
    entry: dict = {}
    if waypoints is not None:
        entry["trajectory"] = np.round(waypoints, 4).tolist()
    if text is not None:
        entry["text"] = text
    return entry


def _load_json(path: Path) -> Predictions:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PredictionFileError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise PredictionFileError(f"{path}: expected a JSON object {{sample_token: entry}}, got {type(data).__name__}")
    preds = Predictions()
    for token, entry in data.items():
        if isinstance(entry, list):
            entry = {"trajectory": entry}
        if not isinstance(entry, dict) or not ({"trajectory", "text"} & set(entry)):
            raise PredictionFileError(
                f"{path}: entry {token!r} must be [[x, y] * {NUM_FUTURE}] or an object with 'trajectory' and/or 'text'")
        text = entry.get("text")
        if text is not None and not isinstance(text, str):
            raise PredictionFileError(f"{path}: entry {token!r}: 'text' must be a string, got {type(text).__name__}")
        waypoints = entry.get("trajectory")
        _add(preds, token, None if waypoints is None else _as_array(waypoints, path, token), text, str(path))
    return preds


def _load_npz(path: Path) -> Predictions:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise PredictionFileError(f"{path}: not a readable NPZ file ({exc})") from exc
    for key in ("tokens", "trajectories"):
        if key not in arrays:
            raise PredictionFileError(f"{path}: array {key!r} missing; expected tokens (N,), trajectories (N, 6, 2)[, texts (N,)]")
    tokens, stack = arrays["tokens"], arrays["trajectories"]
    texts = arrays.get("texts")
    if stack.shape != (len(tokens), NUM_FUTURE, 2) or (texts is not None and texts.shape != tokens.shape):
        raise PredictionFileError(
            f"{path}: shapes tokens {tokens.shape}, trajectories {stack.shape}"
            f"{'' if texts is None else f', texts {texts.shape}'} do not match (N,), (N, {NUM_FUTURE}, 2), (N,)")
    preds = Predictions()
    for i, token in enumerate(tokens.tolist()):
        text = None if texts is None or texts[i] == "" else str(texts[i])
        # An all-NaN row with a text means "no trajectory given": parse the text instead.
        waypoints = None if text is not None and np.isnan(stack[i]).all() else stack[i].astype(np.float64)
        _add(preds, str(token), waypoints, text, str(path))
    return preds


def _add(preds: Predictions, token: str, waypoints: np.ndarray | None, text: str | None, source: str) -> None:
    if token in preds.tokens:
        raise PredictionFileError(f"{source}: sample token {token!r} appears twice; keep one prediction per sample")
    if text is not None:
        preds.texts[token] = text
    if waypoints is None:
        parsed = parse_trajectory(text or "")
        waypoints, reason = parsed.waypoints, parsed.error
    else:
        reason = None if np.isfinite(waypoints).all() else "non-finite value"
    if reason is None:
        preds.trajectories[token] = waypoints
    else:
        preds.failures[token] = reason


def _as_array(value: object, path: Path, token: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PredictionFileError(f"{path}: entry {token!r}: trajectory is not a list of numbers ({exc})") from exc
    if arr.shape != (NUM_FUTURE, 2):
        raise PredictionFileError(
            f"{path}: entry {token!r}: trajectory has shape {arr.shape}; expected {NUM_FUTURE} [x, y] pairs (metres, LiDAR frame)")
    return arr


def _checked_waypoints(value: object, path: Path, token: str) -> np.ndarray:
    arr = _as_array(value, path, token)
    if not np.isfinite(arr).all():
        raise PredictionFileError(f"{path}: entry {token!r}: trajectory has nan/inf; store the model text instead")
    return arr
