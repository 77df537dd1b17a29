"""Prediction files: the hand-over between a planner (baseline, VLA model) and the evaluator.

Every trajectory is six (x, y) waypoints at t = 0.5 .. 3.0 s, metres, in the current LiDAR_TOP
frame of its keyframe (x right, y forward). Two formats, chosen by the file suffix:

  * JSON  {sample_token: {"trajectory": [[x, y] * 6], "text": "raw model output"}}
          ("text" optional; "trajectory" may be left out when "text" is given), or the short
          form {sample_token: [[x, y] * 6]}. `save_predictions` rounds to 0.1 mm (4 decimals).
  * NPZ   arrays `tokens` (N,) str, `trajectories` (N, 6, 2) float, optional `texts` (N,) str;
          a row of NaN with a text means "parse the text".

Optional metadata (provenance for the report): a JSON file may hold one reserved top-level key
`"__meta__": {...}`, an NPZ file a 0-d string array `meta` holding the same JSON object. The
evaluator reads `seed`, `checkpoint`, `token_source` (and keeps any other key as given); files
without it load as before, so other tools' files need no change.

Entries that carry only raw text are parsed with `planning.codec.parse_trajectory`; the ones
that do not parse (and non-finite trajectories) are kept as `failures` with the reason, so the
evaluator can count them instead of dropping them. A file that is malformed as a file (wrong
shapes, wrong types) raises `PredictionFileError` naming the file, the token and the fix.

    save_predictions("outputs/baselines/kinematic.json", {token: wp}, meta={"seed": 0})
    preds = load_predictions("outputs/baselines/kinematic.json")
    preds.trajectories[token]  # (6, 2) float64
    preds.meta                 # {"seed": 0}; {} for a file without metadata
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from planning.codec import parse_trajectory
from vla_world.data.records import NUM_FUTURE

SUFFIXES = (".json", ".npz")
PLAUSIBLE_RANGE_M = 100.0  # a waypoint farther than this from the ego (3 s at 120 km/h is 100 m) is a failure
META_KEY = "__meta__"  # the reserved top-level JSON key (and NPZ array "meta") for provenance
META_FIELDS = ("seed", "checkpoint", "token_source")  # what the evaluator reports; other keys are kept


class PredictionFileError(ValueError):
    """A predictions file that cannot be read as one (not: a sample whose text did not parse)."""


@dataclass
class Predictions:
    """One planner's answers for a split; every token appears in exactly one of the two dicts."""

    trajectories: dict[str, np.ndarray] = field(default_factory=dict)  # token -> (6, 2) LiDAR frame, m
    failures: dict[str, str] = field(default_factory=dict)  # token -> why no trajectory (parse error, ...)
    texts: dict[str, str] = field(default_factory=dict)  # token -> raw model text, where given
    meta: dict = field(default_factory=dict)  # provenance from the file (module doc), e.g. {"seed": 0}
    source: str = ""  # the file it was loaded from ("" when built in memory)

    @property
    def tokens(self) -> set[str]:
        return set(self.trajectories) | set(self.failures)


def save_predictions(path: str | Path, trajectories: dict[str, np.ndarray], texts: dict[str, str] | None = None,
                     meta: dict | None = None) -> Path:
    """Write JSON or NPZ by suffix; tokens only in `texts` are stored as text to be parsed on load.

    `meta`: optional provenance (JSON-serialisable dict, e.g. {"seed": 0, "checkpoint": "..."}).
    """
    path = Path(path)
    texts = texts or {}
    meta_text = _meta_json(meta, path)
    tokens = sorted(set(trajectories) | set(texts))
    checked = {t: _checked_waypoints(trajectories[t], path, t) for t in trajectories}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        entries = {t: _json_entry(checked.get(t), texts.get(t)) for t in tokens}
        if meta_text is not None:
            entries = {META_KEY: json.loads(meta_text), **entries}
        path.write_text(json.dumps(entries, indent=1))
    elif path.suffix == ".npz":
        stack = np.full((len(tokens), NUM_FUTURE, 2), np.nan)
        for i, t in enumerate(tokens):
            if t in checked:
                stack[i] = checked[t]
        arrays = {"tokens": np.array(tokens, dtype=str), "trajectories": stack}
        if texts:
            arrays["texts"] = np.array([texts.get(t, "") for t in tokens], dtype=str)
        if meta_text is not None:
            arrays["meta"] = np.array(meta_text)
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
        preds = _load_json(path)
    elif path.suffix == ".npz":
        preds = _load_npz(path)
    else:
        raise PredictionFileError(f"{path}: unknown suffix {path.suffix!r}; use one of {SUFFIXES}")
    preds.source = str(path)
    return preds


def predictions_from_texts(texts: dict[str, str], meta: dict | None = None) -> Predictions:
    """Parse raw model outputs {token: text} with the codec (for in-process inference)."""
    preds = Predictions(meta=dict(meta or {}))
    for token, text in texts.items():
        _add(preds, token, None, text, "model outputs")
    return preds


def _meta_json(meta: dict | None, path: Path) -> str | None:
    """`meta` as JSON text, or a PredictionFileError naming the file when it is not a JSON object."""
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise PredictionFileError(f"{path}: meta must be a dict (e.g. {{'seed': 0}}), got {type(meta).__name__}")
    try:
        return json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise PredictionFileError(f"{path}: meta is not JSON-serialisable ({exc}); store strings and numbers") from exc


def _checked_meta(meta: object, path: Path) -> dict:
    if not isinstance(meta, dict):
        raise PredictionFileError(f"{path}: {META_KEY!r} must be an object like {{\"seed\": 0}}, got {type(meta).__name__}")
    return meta


def _json_entry(waypoints: np.ndarray | None, text: str | None) -> dict:
    entry: dict = {}
    if waypoints is not None:
        entry["trajectory"] = np.round(waypoints, 4).tolist()
    if text is not None:
        entry["text"] = text
    return entry


def _load_json(path: Path) -> Predictions:
    try:
        data = json.loads(path.read_text(), object_pairs_hook=lambda pairs: _unique_keys(pairs, path))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PredictionFileError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise PredictionFileError(f"{path}: expected a JSON object {{sample_token: entry}}, got {type(data).__name__}")
    preds = Predictions(meta=_checked_meta(data.pop(META_KEY), path) if META_KEY in data else {})
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


def _unique_keys(pairs: list[tuple[str, object]], path: Path) -> dict:
    """json's object hook: a key given twice is an error (json.loads would keep the last one silently)."""
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise PredictionFileError(f"{path}: key {key!r} appears twice; keep one prediction per sample")
        seen[key] = value
    return seen


def _load_npz(path: Path) -> Predictions:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
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
    preds = Predictions(meta=_npz_meta(arrays.get("meta"), path))
    for i, token in enumerate(tokens.tolist()):
        text = None if texts is None or texts[i] == "" else str(texts[i])
        # An all-NaN row with a text means "no trajectory given": parse the text instead.
        waypoints = None if text is not None and np.isnan(stack[i]).all() else stack[i].astype(np.float64)
        _add(preds, str(token), waypoints, text, str(path))
    return preds


def _npz_meta(meta: np.ndarray | None, path: Path) -> dict:
    if meta is None:
        return {}
    try:
        return _checked_meta(json.loads(str(meta)), path)
    except json.JSONDecodeError as exc:
        raise PredictionFileError(f"{path}: array 'meta' must hold a JSON object as a string ({exc})") from exc


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
    if reason is None and waypoints is not None:
        reason = implausible(waypoints)
    if reason is None:
        preds.trajectories[token] = waypoints
    else:
        preds.failures[token] = reason


def implausible(waypoints: np.ndarray) -> str | None:
    """The failure reason of a trajectory with a waypoint beyond PLAUSIBLE_RANGE_M of the ego, else None."""
    farthest = float(np.linalg.norm(waypoints, axis=-1).max())
    if farthest > PLAUSIBLE_RANGE_M:
        return f"implausible waypoint: {farthest:.0f} m from the ego (bound {PLAUSIBLE_RANGE_M:.0f} m)"
    return None


def _as_array(value: object, path: Path, token: str) -> np.ndarray:
    if not _all_numbers(value):
        raise PredictionFileError(f"{path}: entry {token!r}: trajectory must hold numbers only (no strings, booleans "
                                  "or null); write [[x, y] * 6] in metres")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PredictionFileError(f"{path}: entry {token!r}: trajectory is not a list of numbers ({exc})") from exc
    if arr.shape != (NUM_FUTURE, 2):
        raise PredictionFileError(
            f"{path}: entry {token!r}: trajectory has shape {arr.shape}; expected {NUM_FUTURE} [x, y] pairs (metres, LiDAR frame)")
    return arr


def _all_numbers(value: object) -> bool:
    """Nested lists of int/float (not bool, str, None); arrays pass when numeric."""
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "iuf"
    if isinstance(value, (list, tuple)):
        return all(_all_numbers(v) for v in value)
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _checked_waypoints(value: object, path: Path, token: str) -> np.ndarray:
    arr = _as_array(value, path, token)
    if not np.isfinite(arr).all():
        raise PredictionFileError(f"{path}: entry {token!r}: trajectory has nan/inf; store the model text instead")
    return arr
