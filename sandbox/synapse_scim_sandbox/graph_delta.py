"""Pages of Graph's `groups/delta`: the initial full round and rounds of changes since a token.

Token state (a dict, encoded by the caller): `u` = change sequence the round is consistent with,
`a`/`mo` = resume position of a full round (group ordinal, member offset), `s`/`o` = start sequence
and offset of an incremental round.
"""

from __future__ import annotations

from typing import Any

from .directory import USER, Directory
from .graph_objects import ODATA_TYPE, Plan, project


def full_page(
    d: Directory, chunk: int, tok: dict[str, Any], p: Plan, with_members: bool, only: set[str] | None, size: int
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    start, member_offset = int(tok.get("a", 0)), int(tok.get("mo", 0))  # resume at ordinal >= start
    value: list[dict[str, Any]] = []
    for ordinal, gid in d.group_order.after(start - 1):
        if ordinal != start:
            member_offset = 0  # the partly sent group is gone: continue with the next one
        if only is not None and gid not in only:
            continue
        if len(value) == size:
            return value, tok | {"a": ordinal, "mo": 0}
        group = d.groups[gid]
        item = project(group, p, False)
        if with_members:
            members = d.direct_members(gid)
            part = members[member_offset : member_offset + chunk]
            if part:
                item["members@delta"] = [
                    {"@odata.type": ODATA_TYPE[o.kind], "id": o.id} for m in part if (o := d.get(m)) is not None
                ]
            if member_offset + chunk < len(members):
                value.append(item)
                return value, tok | {"a": ordinal, "mo": member_offset + chunk}
        member_offset = 0
        value.append(item)
    return value, None


def incremental_page(
    d: Directory, tok: dict[str, Any], p: Plan, with_members: bool, only: set[str] | None, size: int
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    select = tok.get("sel")
    changes = [c for c in d.delta(int(tok["s"]), int(tok["u"]), select) if only is None or c.group_id in only]
    offset = int(tok.get("o", 0))
    value: list[dict[str, Any]] = []
    for change in changes[offset : offset + size]:
        group = d.groups.get(change.group_id)
        if group is None:
            value.append({"id": change.group_id, "@removed": {"reason": "changed"}})
            continue
        item = project(group, p, False)
        if with_members and change.members:
            item["members@delta"] = [
                {"@odata.type": ODATA_TYPE.get(kind or USER, ODATA_TYPE[USER]), "id": mid}
                | ({} if present else {"@removed": {"reason": "deleted"}})
                for mid, (present, kind) in change.members.items()
            ]
        value.append(item)
    if offset + size < len(changes):
        return value, tok | {"o": offset + size}
    return value, None
