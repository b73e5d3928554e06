"""The benchmarks stay runnable and the docs' figures stay traceable to them (issue #20).

bench/README.md maps every doc section that quotes measured figures to the command that prints
them, and `make bench` (bench/suite.py) runs exactly the commands of its first table. These tests
check that mapping mechanically: every script it names exists and answers ``--help`` with the
options the table passes, every doc section with a table of measured figures is mapped, every
mapped section exists and names its command, and labelled-historical or removed figures are
labelled or gone. No benchmark is run and no timing is asserted.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import rounds  # noqa: E402
import suite  # noqa: E402

README = (BENCH / "README.md").read_text()
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A table row quoting a measured speed: a number with a rate, a duration, a ratio or a CPU share.
MEASURED = re.compile(r"\d\s*(µs|ms|events/s|req/s|jobs/s|rows/s|requests/s|ev/s)(?![\w/])|\d\s?×|\d\.\d+x\b"
                      r"|\d\s?% \(\d")
# Sections whose tables carry such units without being measurements (limits, API semantics).
NOT_MEASUREMENTS = {
    ("docs/bundle.md", "Compatibility with analytics-next"),  # "no 300 ms wait" (an API difference)
    ("docs/security.md", "Ingest limits"),  # configured limits
}
HELPERS = ["bench/static_publish.py", "bench/suppression.py", "bench/deliver_profile.py", "bench/ingest_profile.py"]


def mapping() -> list[dict]:
    """The rows of bench/README.md's "Doc table → command" table."""
    body = README.split("## Doc table → command", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in body.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.match(r"[\w/.-]+\.md § ", cells[0]):
            doc, heading = cells[0].split(" § ", 1)
            rows.append({"doc": doc, "heading": heading, "commands": re.findall(r"`(bench/[^`]+)`", cells[2]),
                         "state": cells[3]})
    return rows


def sections(path: Path) -> dict[str, str]:
    """Heading → its own text (the heading line up to the next heading), outside fenced code blocks."""
    out: dict[str, list[str]] = {}
    current, fenced = None, False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"#{1,6} (.*)", line)
        if heading:
            current = heading.group(1).strip()
            out.setdefault(current, [line])
        elif current is not None:
            out[current].append(line)
    return {heading: "\n".join(lines) for heading, lines in out.items()}


def script(command: str) -> str:
    return shlex.split(command)[0]


@lru_cache(maxsize=None)
def help_text(path: str) -> str:
    done = subprocess.run([sys.executable, path, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{path} --help failed:\n{done.stderr}"
    return done.stdout


def test_the_suite_reads_every_command_of_the_table():
    commands = suite.commands()
    assert len(commands) >= 15
    assert ("bench/collect.py --database postgres", "--duration 1 --rounds 1 --connections 64") in commands
    assert all(quick for _, quick in commands), "every command needs smoke options for make bench-quick"
    assert len({c for c, _ in commands}) == len(commands), "a command listed twice would run twice"


SCRIPTS = sorted({script(c) for c, _ in suite.commands()} | set(HELPERS))


@pytest.mark.parametrize("path", SCRIPTS)
def test_every_named_script_exists_and_answers_help(path):
    assert (ROOT / path).is_file()
    assert help_text(path).startswith("usage:")


@pytest.mark.parametrize("command,quick", suite.commands())
def test_every_option_the_table_passes_is_one_the_script_takes(command, quick):
    text = help_text(script(command))
    for option in re.findall(r"(--[\w-]+)", command + " " + quick):
        assert re.search(rf"{re.escape(option)}\b", text), f"{script(command)} has no {option}"


def test_every_bench_script_is_run_by_make_bench_or_listed_as_a_helper():
    named = {script(c) for c, _ in suite.commands()} | set(HELPERS)
    libraries = {"bench/rounds.py", "bench/suite.py"}
    for path in sorted(BENCH.glob("*.py")):
        relative = f"bench/{path.name}"
        assert relative in named | libraries, f"{relative} is neither in bench/README.md's tables nor a helper"
    for helper in HELPERS:
        assert f"`{helper}`" in README.split("## Not run by `make bench`", 1)[1]


def test_every_command_of_the_mapping_is_run_by_make_bench():
    run = {c for c, _ in suite.commands()}
    for row in mapping():
        assert row["commands"], row
        for command in row["commands"]:
            assert command in run, f"{row['doc']} § {row['heading']}: `{command}` is not in make bench's table"


def test_every_doc_section_with_measured_figures_is_mapped():
    mapped = {(row["doc"], row["heading"]) for row in mapping()}
    missing = []
    for path in DOCS:
        doc = str(path.relative_to(ROOT))
        for heading, text in sections(path).items():
            measured = [line for line in text.splitlines() if line.startswith("|") and MEASURED.search(line)]
            if measured and (doc, heading) not in mapped | NOT_MEASUREMENTS:
                missing.append(f"{doc} § {heading}: {measured[0][:80]}")
    assert not missing, "doc sections quoting figures without a bench/README.md mapping:\n" + "\n".join(missing)


@pytest.mark.parametrize("row", mapping(), ids=lambda row: f"{row['doc']}§{row['heading'][:30]}")
def test_every_mapped_section_exists_names_its_command_and_is_labelled(row):
    found = sections(ROOT / row["doc"])
    assert row["heading"] in found, f"{row['doc']} has no section {row['heading']!r}"
    text = found[row["heading"]]
    for command in row["commands"]:
        assert script(command) in text, f"{row['doc']} § {row['heading']} does not name {script(command)}"
    if row["state"].startswith("historical"):
        assert "historical" in text.lower() and "not reproducible by `make bench`" in text, row
    if row["state"].startswith("removed"):
        assert not [line for line in text.splitlines() if line.startswith("|") and MEASURED.search(line)], row


def test_every_bench_script_the_docs_name_exists():
    for path in DOCS:
        for name in set(re.findall(r"bench/[\w/]+\.py", path.read_text())):
            assert (ROOT / name).is_file(), f"{path.name} names {name}, which does not exist"


def test_rounds_keep_three_unless_a_smoke_run(monkeypatch):
    monkeypatch.delenv("BENCH_QUICK", raising=False)
    assert rounds.count(1) == 3 and rounds.count(5) == 5
    calls = []
    figure = rounds.rounds(lambda: calls.append(1) or len(calls), n=1)
    assert figure.values == [1.0, 2.0, 3.0] and len(figure.loads) == 3
    assert figure.spread("{:.1f}") == "2.0 (1.0–3.0)"
    monkeypatch.setenv("BENCH_QUICK", "1")
    assert rounds.count(1) == 1 and rounds.count(5) == 5
