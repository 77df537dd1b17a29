"""Rewrite the README's results table from an evaluation report, so the README shows a run's own output.

    python tools/demo_readme.py --report outputs/eval/report.md --readme README.md

`make demo` runs this as its `readme` step: the block between `<!-- results:start -->` and
`<!-- results:end -->` becomes the report's provenance lines and its ST-P3 table (the convention
OpenDriveVLA and GPT-Driver report), copied verbatim; nothing is typed in by hand.
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


def results_block(report: str) -> str:
    return "\n".join([START, "", provenance(report), "", f"{HEADLINE} convention:", "", section(report, HEADLINE),
                      "", END])


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
