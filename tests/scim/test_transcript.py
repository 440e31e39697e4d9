"""bench/scim_transcript.py: the Okta-style conversation runs against the endpoint with the documented
answers, and its output carries neither the token nor the password."""

from __future__ import annotations

import io
import re

import scim_transcript


async def test_the_transcript_runs_and_redacts() -> None:
    out = io.StringIO()
    statuses = await scim_transcript.run(None, None, out)
    text = out.getvalue()
    assert statuses == scim_transcript.EXPECTED
    assert "Authorization: Bearer <redacted>" in text and '"password": "<redacted>"' in text
    assert not re.search(r"Bearer (?!<redacted>)", text)
    assert text.count("<- 204 No Content") == 2
    assert '"active": false' in text
