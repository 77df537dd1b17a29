"""Schema and link checks for a nuScenes v1.0 table folder (the mini world or real nuScenes).

Why: nuscenes-devkit loads tables without checking them, so a broken token or chain only shows
up later as a wrong trajectory. `validate_nuscenes_tables` reads only the 13 JSON tables and
lists every problem it finds, each naming the table, the token and what is wrong;
`validate_files` (run by the CLI unless --tables-only) adds the files the tables name: map
expansion JSONs, basemap PNGs and keyframe images/lidar sweeps.

    python -m vla_world.data.validate data/mini_world --version v1.0-mini
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

TABLES = ("attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map", "sample",
          "sample_annotation", "sample_data", "scene", "sensor", "visibility")

# (table, field, target table): every token field that must resolve ("" allowed only for prev/next).
LINKS = (
    ("calibrated_sensor", "sensor_token", "sensor"),
    ("sample", "scene_token", "scene"),
    ("sample_data", "sample_token", "sample"),
    ("sample_data", "ego_pose_token", "ego_pose"),
    ("sample_data", "calibrated_sensor_token", "calibrated_sensor"),
    ("sample_annotation", "sample_token", "sample"),
    ("sample_annotation", "instance_token", "instance"),
    ("sample_annotation", "visibility_token", "visibility"),
    ("instance", "category_token", "category"),
    ("instance", "first_annotation_token", "sample_annotation"),
    ("instance", "last_annotation_token", "sample_annotation"),
    ("scene", "log_token", "log"),
    ("scene", "first_sample_token", "sample"),
    ("scene", "last_sample_token", "sample"),
)
CHAINED = ("sample", "sample_data", "sample_annotation")


def validate_nuscenes_tables(dataroot, version: str) -> list[str]:
    """Problems found in `<dataroot>/<version>/*.json`; an empty list means the tables are consistent."""
    folder = Path(dataroot) / version
    tables, problems = _load(folder)
    if problems:
        return problems
    index = {name: {r["token"]: r for r in rows} for name, rows in tables.items()}
    problems += _check_links(index)
    problems += _check_list_links(index)
    for name in CHAINED:
        problems += _check_chain(name, index[name], _timestamps(name, index))
    problems += _check_owned_chains(index, SCENE_SAMPLES)
    problems += _check_owned_chains(index, INSTANCE_ANNOTATIONS)
    problems += _check_keyframes(index)
    return problems


def _load(folder: Path) -> tuple[dict[str, list[dict]], list[str]]:
    tables, problems = {}, []
    for name in TABLES:
        path = folder / f"{name}.json"
        if not path.exists():
            problems.append(f"{name}.json: missing table (expected {path}); re-run the dataset export or fix --version")
            continue
        try:
            tables[name] = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            problems.append(f"{name}.json: not valid JSON ({err})")
            continue
        missing_token = [i for i, r in enumerate(tables[name]) if "token" not in r]
        if missing_token:
            problems.append(f"{name}.json: records {missing_token[:5]} have no 'token' field")
    return tables, problems


def _check_links(index: dict) -> list[str]:
    problems = []
    for table, field, target in LINKS:
        for token, record in index[table].items():
            value = record.get(field)
            if value is None:
                problems.append(f"{table}.json: {token}: field '{field}' is missing")
            elif value not in index[target]:
                problems.append(f"{table}.json: {token}: {field}={value!r} does not resolve in {target}.json")
    return problems


def _check_list_links(index: dict) -> list[str]:
    problems = []
    for token, record in index["sample_annotation"].items():
        for attribute in record.get("attribute_tokens", []):
            if attribute not in index["attribute"]:
                problems.append(f"sample_annotation.json: {token}: attribute token {attribute!r} does not resolve")
    map_logs = set()
    for token, record in index["map"].items():
        for log in record.get("log_tokens", []):
            map_logs.add(log)
            if log not in index["log"]:
                problems.append(f"map.json: {token}: log token {log!r} does not resolve in log.json")
    for log in index["log"]:
        if log not in map_logs:
            problems.append(f"log.json: {log}: no map record lists this log in its log_tokens")
    return problems


def _timestamps(name: str, index: dict) -> dict[str, int]:
    if name == "sample_annotation":
        return {t: index["sample"].get(r["sample_token"], {}).get("timestamp", 0) for t, r in index[name].items()}
    return {t: r.get("timestamp", 0) for t, r in index[name].items()}


def _check_chain(name: str, records: dict, stamps: dict[str, int]) -> list[str]:
    """prev/next resolve, agree in both directions, and timestamps strictly increase along next."""
    problems = []
    for token, record in records.items():
        nxt, prev = record.get("next"), record.get("prev")
        if nxt is None or prev is None:
            problems.append(f"{name}.json: {token}: 'prev'/'next' field missing")
            continue
        if nxt:
            if nxt not in records:
                problems.append(f"{name}.json: {token}: next={nxt!r} does not resolve")
            elif records[nxt].get("prev") != token:
                problems.append(f"{name}.json: {token}: next={nxt} but that record's prev is {records[nxt].get('prev')!r}")
            elif stamps[nxt] <= stamps[token]:
                problems.append(f"{name}.json: {token}: timestamp does not increase towards next={nxt}")
        if prev:
            if prev not in records:
                problems.append(f"{name}.json: {token}: prev={prev!r} does not resolve")
            elif records[prev].get("next") != token:
                problems.append(f"{name}.json: {token}: prev={prev} but that record's next is {records[prev].get('next')!r}")
    return problems


def _walk(records: dict, first: str, limit: int) -> list[str]:
    chain, token = [], first
    while token and token in records and len(chain) <= limit:
        chain.append(token)
        token = records[token].get("next", "")
    return chain


@dataclass(frozen=True)
class OwnedChain:
    """A prev/next chain of `child` rows owned by one `owner` row (scene -> samples, instance -> annotations)."""

    owner: str  # table of the owner, e.g. "scene"
    child: str  # table of the chained rows, e.g. "sample"
    first: str  # owner field naming the first child
    last: str  # owner field naming the last child
    count: str  # owner field with the number of children
    back_link: str  # child field pointing back at the owner


SCENE_SAMPLES = OwnedChain("scene", "sample", "first_sample_token", "last_sample_token", "nbr_samples", "scene_token")
INSTANCE_ANNOTATIONS = OwnedChain("instance", "sample_annotation", "first_annotation_token", "last_annotation_token",
                                  "nbr_annotations", "instance_token")


def _check_owned_chains(index: dict, spec: OwnedChain) -> list[str]:
    problems = []
    children = index[spec.child]
    for token, owner in index[spec.owner].items():
        first, last = owner.get(spec.first), owner.get(spec.last)
        if first not in children or last not in children:
            continue  # already reported as a broken link
        problems += _chain_problems(f"{spec.owner}.json: {token}", token, children, first, last, owner.get(spec.count), spec)
    return problems


def _chain_problems(where: str, token: str, children: dict, first: str, last: str, count: int | None,
                    spec: OwnedChain) -> list[str]:
    problems = []
    if children[first].get("prev"):
        problems.append(f"{where}: first {spec.child} {first} has a prev link")
    if children[last].get("next"):
        problems.append(f"{where}: last {spec.child} {last} has a next link")
    chain = _walk(children, first, len(children))
    if not chain or chain[-1] != last:
        problems.append(f"{where}: walking next from {spec.first} does not end at {spec.last}")
    if len(chain) != count:
        problems.append(f"{where}: {spec.count}={count} but the chain has {len(chain)}")
    foreign = [c for c in chain if children[c].get(spec.back_link) != token]
    if foreign:
        problems.append(f"{where}: {spec.child} {foreign[0]} in its chain belongs to another {spec.owner}")
    return problems


def _check_keyframes(index: dict) -> list[str]:
    """Every sample has exactly one keyframe sample_data for each sensor channel used as a keyframe."""
    channel_of = {t: index["sensor"].get(c.get("sensor_token"), {}).get("channel", "?")
                  for t, c in index["calibrated_sensor"].items()}
    per_sample: dict[str, Counter] = defaultdict(Counter)
    for record in index["sample_data"].values():
        if record.get("is_key_frame"):
            per_sample[record.get("sample_token")][channel_of.get(record.get("calibrated_sensor_token"), "?")] += 1
    channels = set().union(*per_sample.values()) if per_sample else set()
    problems = []
    for token in index["sample"]:
        counts = per_sample.get(token, Counter())
        missing = sorted(channels - set(counts))
        doubled = sorted(c for c, n in counts.items() if n > 1)
        if missing:
            problems.append(f"sample.json: {token}: no keyframe sample_data for {', '.join(missing)}")
        if doubled:
            problems.append(f"sample.json: {token}: several keyframe sample_data for {', '.join(doubled)}")
    return problems


def validate_files(dataroot, version: str) -> list[str]:
    """Files the tables point at that are missing: map expansion JSONs, basemap PNGs, keyframe images/sweeps.

    Keyframe files only: real nuScenes is often used without its intermediate sweeps.
    """
    root, folder = Path(dataroot), Path(dataroot) / version
    try:
        tables = {name: json.loads((folder / f"{name}.json").read_text()) for name in ("log", "map", "sample_data")}
    except (OSError, ValueError) as err:
        return [f"{folder}: cannot check the files the tables name ({err})"]
    fix = "re-run tools/make_mini_world.py (mini world) or complete the nuScenes download"
    problems = [f"log.json: location {loc!r}: map expansion {root / 'maps' / 'expansion' / f'{loc}.json'} is missing; {fix}"
                for loc in sorted({r.get("location", "") for r in tables["log"]})
                if not (root / "maps" / "expansion" / f"{loc}.json").is_file()]
    problems += [f"map.json: {r['token']}: basemap {root / r['filename']} is missing; {fix}"
                 for r in tables["map"] if r.get("filename") and not (root / r["filename"]).is_file()]
    missing = [r["filename"] for r in tables["sample_data"] if r.get("is_key_frame") and not (root / r["filename"]).is_file()]
    if missing:
        problems.append(f"sample_data.json: {len(missing)} keyframe image/lidar file(s) missing under {root}, e.g. "
                        f"{', '.join(missing[:3])}; {fix}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a nuScenes v1.0 table folder: token links, prev/next "
                                     "chains, timestamps, keyframes, instances and map coverage.")
    parser.add_argument("dataroot", help="folder containing <version>/ (e.g. data/mini_world)")
    parser.add_argument("--version", default="v1.0-mini", help="table folder name (default: v1.0-mini)")
    parser.add_argument("--tables-only", action="store_true",
                        help="skip the files the tables name (map expansion JSONs, basemap PNGs, keyframe images)")
    args = parser.parse_args(argv)
    problems = validate_nuscenes_tables(args.dataroot, args.version)
    if not args.tables_only:
        problems += validate_files(args.dataroot, args.version)
    for line in problems:
        print(line)
    print(f"{len(problems)} problem(s) in {Path(args.dataroot) / args.version}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
