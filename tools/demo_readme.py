"""Rewrite the README's results table from an evaluation report, so the README shows a run's own output.

    python tools/demo_readme.py --report outputs/eval/report.md --readme README.md

`make demo` runs this as its `readme` step: the block between `<!-- results:start -->` and
`<!-- results:end -->` becomes the report's provenance lines and its ST-P3 table (the convention
OpenDriveVLA and GPT-Driver report), copied verbatim, and one sentence, computed from that table,
saying which rows the VLA row beats and which it loses to; nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

START, END = "<!-- results:start -->", "<!-- results:end -->"
HEADLINE = "ST-P3"


def section(report: str, heading: str) -> str:
    """The body of `## heading` (up to the next heading) of a markdown report."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^#)", report + "\n#", re.DOTALL | re.MULTILINE)
    if match is None:
        raise SystemExit(f"report has no '## {heading}' section; was it written by tools/eval_planning.py?")
    return match.group(1).strip()


def provenance(report: str) -> str:
    """The `- Split: ...`, `- Command: ...` lines at the top of the report."""
    head = report.split("\n## ", 1)[0]
    return "\n".join(line for line in head.splitlines() if line.startswith("- "))


def table_rows(table: str) -> dict[str, dict[str, float]]:
    """{method: {column: mean}} of a report table; `1.23 ± 0.04` reads as 1.23, `n/a` is left out."""
    lines = [line for line in table.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        values = {col: float(cell.split("±")[0]) for col, cell in zip(header[1:], cells[1:])
                  if cell and cell.split("±")[0].strip().replace(".", "", 1).isdigit()}
        rows[cells[0]] = values
    return rows


def verdict(table: str, learned_prefix: str = "VLA", key: str = "L2 Avg (m)") -> str:
    """One sentence per learned row: its L2 Avg against every other row (GT excluded), in the table's
    numbers (2 decimals, so equal printed values are a tie, not a win)."""
    rows = {name: v[key] for name, v in table_rows(table).items() if not name.startswith("GT") and key in v}
    return " ".join(_sentence(name, rows) for name in rows if name.startswith(learned_prefix))


def _sentence(name: str, rows: dict[str, float]) -> str:
    mine = rows[name]
    others = sorted(((o, v) for o, v in rows.items() if o != name), key=lambda kv: kv[1])
    groups = {"loses to": [o for o in others if o[1] < mine], "ties with": [o for o in others if o[1] == mine],
              "beats": [o for o in others if o[1] > mine]}
    said = [f"{verb} {', '.join(f'{o} ({v:.2f} m)' for o, v in group)}" for verb, group in groups.items() if group]
    clause = ", ".join(said[:-1]) + (" and " if len(said) > 1 else "") + said[-1] if said else "has no other row to compare"
    return f"In this run {name} has an L2 Avg of {mine:.2f} m: it {clause}."


def results_block(report: str) -> str:
    table = section(report, HEADLINE)
    return "\n".join([START, "", provenance(report), "", f"{HEADLINE} convention:", "", table, "",
                      verdict(table), "", END])


def rewrite(readme: Path, block: str) -> None:
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme}: no '{START}' ... '{END}' markers; add them where the table belongs")
    head, rest = text.split(START, 1)
    readme.write_text(head + block + rest.split(END, 1)[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--report", default="outputs/eval/report.md", help="report.md written by tools/eval_planning.py")
    p.add_argument("--readme", default="README.md", help="the README to rewrite (between the markers)")
    args = p.parse_args(argv)
    rewrite(Path(args.readme), results_block(Path(args.report).read_text()))
    print(f"{args.readme}: results table rewritten from {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
