"""The README stays true: every SWITCHBOARD_* setting is in its table with its real default,
every document it links exists, and it gives the two commands."""

from __future__ import annotations

import re
from pathlib import Path

from server.config import documented_settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented_with_its_default():
    for name, default, _doc in documented_settings():
        row = next((line for line in README.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"{name} is missing from the README's settings table"
        shown = f"`{default}`" if default else "(empty)"
        assert row.split("|")[2].strip() == shown, f"{name}: README shows {row.split('|')[2].strip()}, code has {shown}"


def test_readme_names_no_setting_the_code_does_not_have():
    known = {name for name, _, _ in documented_settings()}
    mentioned = set(re.findall(r"SWITCHBOARD_[A-Z_]+[A-Z]", README))
    assert mentioned <= known, f"README mentions unknown settings: {sorted(mentioned - known)}"


def test_linked_documents_and_screenshots_exist():
    links = re.findall(r"\]\(((?:docs|js_templates)/[^)]+)\)", README)
    assert links
    for link in links:
        path, _, anchor = link.partition("#")
        assert (ROOT / path).is_file(), f"README links {link}, which does not exist"
        if anchor:  # a heading of that document, as GitHub makes its anchor
            headings = re.findall(r"^#+\s+(.+)$", (ROOT / path).read_text(encoding="utf-8"), re.M)
            anchors = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
            assert anchor in anchors, f"README links {link}, but {path} has no such heading"


def test_the_two_commands_are_given_and_the_makefile_has_them():
    assert "make run" in README and "make test" in README
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
