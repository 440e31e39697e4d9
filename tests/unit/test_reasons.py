"""Every reason the operator writes is a member of core.reasons.Reason, and nowhere else spelled out:
a reason is API (alerts, `kubectl wait`, docs/troubleshooting.md match on it)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from synapse_scim.controller.sync import SyncResult, workspace_failure
from synapse_scim.core.model import Problem
from synapse_scim.core.objects import BindingObject, WorkspaceObject
from synapse_scim.core.reasons import STALLING_REASONS, TOKEN_REFUSED_REASONS, Reason, is_transient
from synapse_scim.core.status import binding_status

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "synapse_scim"
WHEN = "2026-12-01T00:00:00Z"


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


# Every reason, placed by hand, so that a new one fails the test below until someone decides whether
# a person must fix it (Stalled) or the operator retries it by itself (Reconciling).
STALLING = {
    Reason.SUBJECT_NOT_FOUND,
    Reason.SUBJECT_AMBIGUOUS,
    Reason.SUBJECT_KIND_UNKNOWN,
    Reason.ROLE_NOT_FOUND,
    Reason.ROLE_NOT_VALID_AT_SCOPE,
    Reason.SCOPE_INVALID,
    Reason.WORKSPACE_NOT_FOUND,
    Reason.WORKSPACE_NAME_UNKNOWN,
    Reason.ACCESS_DENIED,
    Reason.GRANT_REJECTED,
    Reason.AUTHENTICATION_FAILED,
    Reason.SECRET_NOT_FOUND,
    Reason.SECRET_KEY_MISSING,
    Reason.SECRET_KEY_EMPTY,
    Reason.CERTIFICATE_INVALID,
    Reason.CERTIFICATE_UNTRUSTED,
    Reason.CREDENTIAL_INVALID,
    Reason.WORKLOAD_IDENTITY_UNAVAILABLE,
    Reason.DIRECTORY_ACCESS_DENIED,
    Reason.REMOVALS_HELD,
    Reason.SECRET_NOT_READABLE,
    Reason.NO_TOKENS,
    Reason.SCIM_PROVIDER_NOT_FOUND,
    Reason.SCIM_GROUP_NOT_FOUND,
    Reason.DELETION_BLOCKED,  # retried, but a namespace stuck Terminating needs a person to look
    # Only ever in status.unresolved (the binding stays Ready), but a person fixes them, not a retry.
    Reason.PRINCIPAL_NOT_MATCHED,
    Reason.PRINCIPAL_AMBIGUOUS,
}
TRANSIENT = {
    Reason.WORKSPACE_UNREACHABLE,
    Reason.WORKSPACE_READ_FAILED,
    Reason.THROTTLED,  # Synapse kept answering 429 to a write; the README and architecture say retried
    Reason.DIRECTORY_READ_FAILED,
    Reason.DELTA_EXPIRED,  # the tenant watch takes new links by itself
    Reason.READS_INCOMPLETE,  # a hold that the next complete read lifts
    Reason.DELETING,  # a deleted workspace on its way: its bindings' revocations in progress
}
# Never the reason of a failure (states, Events, and a disabled account, which simply gets nothing):
# is_transient says True of them, as of every reason a person need not fix, and nothing asks it.
NOT_A_FAILURE = {
    Reason.SUBJECT_DISABLED,
    Reason.SUSPENDED,
    Reason.WORKSPACE_SUSPENDED,
    Reason.SYNCED,
    Reason.IN_SYNC,
    Reason.APPLYING,
    Reason.DRIFT_DETECTED,
    Reason.IDLE,
    Reason.PROGRESSING,
    Reason.SERVING,
    Reason.GRANTED,
    Reason.GRANT_FAILED,
    Reason.REVOKED,
    Reason.REVOKE_FAILED,
}


def test_every_reason_is_classified_stalling_or_transient() -> None:
    placed = [*STALLING, *TRANSIENT, *NOT_A_FAILURE]
    assert sorted(placed) == sorted(Reason), "place each reason in exactly one of the three sets above"
    assert {r for r in Reason if not is_transient(r)} == STALLING == STALLING_REASONS
    assert {r for r in Reason if is_transient(r)} == TRANSIENT | NOT_A_FAILURE


def test_token_refused_reasons_stall() -> None:
    # A refused token is dropped and asked for again, but a person must still fix what Azure refused.
    assert TOKEN_REFUSED_REASONS <= STALLING_REASONS


@pytest.mark.parametrize("reason", sorted(Reason))
def test_a_workspace_failure_its_bindings_and_the_loop_agree(reason: Reason) -> None:
    meta = {"namespace": "team", "generation": 1}
    ws = WorkspaceObject.from_body({"metadata": {**meta, "name": "ws"}})
    b = BindingObject.from_body({"metadata": {**meta, "name": "b"}})
    result: SyncResult = workspace_failure(ws, [b], Problem(reason, "x"), WHEN)
    binding = binding_status(result.outcomes[b.key], generation=1, old=None, workspace_ref="ws", when=WHEN)
    stalled = {
        kind: next(c["status"] for c in status["conditions"] if c["type"] == "Stalled") == "True"
        for kind, status in (("workspace", result.workspace_status), ("binding", binding))
    }
    retried = bool(result.transient())
    assert stalled == {"workspace": not is_transient(reason), "binding": not is_transient(reason)}
    assert retried is is_transient(reason)
