"""Error codes are named in one place (``server.errors.CODES``): every code server/ answers with
(``ApiError(404, "not_found", …)``, ``web_error(request, 409, "…", …)``, ``{"code": "…"}``) is
declared there, with its meaning."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from server.errors import _DEFAULT_CODES, CODES

ROOT = Path(__file__).resolve().parent.parent


def codes_used(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):  # (status, "code", …) anywhere in a call's arguments
            for status, code in zip(node.args, node.args[1:]):
                if (isinstance(status, ast.Constant) and isinstance(status.value, int) and 400 <= status.value < 600
                        and isinstance(code, ast.Constant) and isinstance(code.value, str)):
                    found.add(code.value)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "code" and isinstance(value, ast.Constant):
                    found.add(value.value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):  # prepared JSON bodies
            found.update(re.findall(r'"code":\s*"([a-z_]+)"', node.value))
    return found


def test_every_code_the_server_answers_with_is_declared():
    used = {code: path for path in (ROOT / "server").rglob("*.py")
            for code in codes_used(path.read_text(encoding="utf-8"))}
    assert {c: str(p) for c, p in used.items() if c not in CODES} == {}


def test_the_scan_finds_codes_in_each_form():
    assert codes_used('raise ApiError(404, "nope_a", "x")\nweb_error(r, 409, "nope_b", "y")\n'
                      'd = {"code": "nope_c"}\nb = b"";s = \'{"code":"nope_d"}\'') == {"nope_a", "nope_b", "nope_c", "nope_d"}
    assert set(_DEFAULT_CODES.values()) <= set(CODES)
