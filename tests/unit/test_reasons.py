"""Every reason the operator writes is a member of core.reasons.Reason, and nowhere else spelled out:
a reason is API (alerts, `kubectl wait`, docs/troubleshooting.md match on it)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from synapse_scim.core.reasons import STALLING_REASONS, TOKEN_REFUSED_REASONS, TRANSIENT_WORKSPACE_REASONS, Reason

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "synapse_scim"


def _string_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (n.lineno, n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    ]


def test_no_reason_is_spelled_as_a_string_literal_outside_its_enum() -> None:
    values = {r.value for r in Reason}
    found = [
        f"{path.relative_to(PACKAGE)}:{line}: {text!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "reasons.py"
        for line, text in _string_literals(path)
        if text in values
    ]
    assert found == [], "use the Reason member instead"


def test_the_scanner_would_see_a_literal_reason(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""SubjectNotFound in a docstring is prose."""\nx = "SubjectNotFound"\n')
    assert [t for _, t in _string_literals(sample) if t in set(Reason)] == ["SubjectNotFound"]


def test_reasons_are_camel_case_and_unique() -> None:
    assert all(re.fullmatch(r"[A-Z][a-z]+(?:[A-Z][a-z]*)*", r.value) for r in Reason)
    assert len({r.value for r in Reason}) == len(Reason)


def test_the_reason_sets_do_not_overlap_where_they_must_not() -> None:
    # A reason a person must fix is never also one the operator retries by itself.
    assert not (STALLING_REASONS & TRANSIENT_WORKSPACE_REASONS)
    assert TOKEN_REFUSED_REASONS <= STALLING_REASONS
