"""A regression the soak found: once the sandbox expired every issued token (as Entra ID may revoke or
expire a token before the client's own clock says so), the operator kept presenting the cached,
rejected token on every sync until its declared expiry: every binding stayed AuthenticationFailed
and nothing converged. A rejected token must be dropped, and the next sync must get a fresh one."""

from __future__ import annotations

from support.harness import RB_PLURAL, running_harness
from support.orgs import small_org, upn

CONTRIBUTOR = "7572bffe-f453-4b66-912a-46cc5ef38fda"


def test_tokens_expired_early_are_replaced_and_the_operator_converges(cluster, namespace, tmp_path, request):
    with running_harness(cluster, namespace, small_org(), tmp_path, request) as h:
        h.start_operator()
        h.workspace(syncInterval="30s")
        h.binding("analysts", ["Synapse Contributor"], [{"kind": "Group", "name": "Analysts"}])
        h.wait_condition(RB_PLURAL, "analysts")
        tokens = len(h.sb.admin.request_log(service="login", operation="token"))
        assert h.sb.admin.expire_tokens()["expired"] >= 1
        h.sb.admin.add_member("Analysts", upn("heidi"))
        heidi = h.user_id(upn("heidi"))
        h.wait_for(
            lambda: heidi in {a["principalId"] for a in h.assignments() if a["roleDefinitionId"] == CONTRIBUTOR},
            "heidi granted with a fresh token",
            timeout=90,
        )
        h.wait_condition(RB_PLURAL, "analysts")
        assert len(h.sb.admin.request_log(service="login", operation="token")) > tokens, "a new token was issued"
