"""In-memory Entra ID directory: users, groups, service principals, membership and its change log.

Everything here is plain data and synchronous; the HTTP layers read and mutate it on one event loop.
Ids are stored lower-case (object ids are GUIDs, compared case-insensitively by the real service).

Indexes kept so that reads are O(answer), not O(directory):
- userPrincipalName, mail, group displayName, service principal appId and displayName -> ids (all
  without case), and the sorted userPrincipalNames for `startswith` (a guest's `x_y#EXT#@` prefix);
- member id -> the groups that contain it directly (to invalidate cached transitive expansions of
  every ancestor, cycle-safe, when a group changes);
- cached direct and transitive member tuples per group (immutable snapshots: a page token can keep
  pointing at the snapshot it started on).

Every group change (create, rename, member added or removed, delete) appends to a change log with a
monotonically increasing sequence number; Graph's `groups/delta` is computed from it. Users and
service principals have change logs of their own (created, a property changed, deleted), for
`users/delta` and `servicePrincipals/delta`. Each update names the property it changed, so a delta
round reports only changes of the properties it `$select`ed, as Graph does.
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, TypeVar

USER: Literal["user"] = "user"
GROUP: Literal["group"] = "group"
SERVICE_PRINCIPAL: Literal["servicePrincipal"] = "servicePrincipal"
Kind = Literal["user", "group", "servicePrincipal"]

#: Synapse `principalType` spelling for each kind.
PRINCIPAL_TYPES: dict[str, str] = {USER: "User", GROUP: "Group", SERVICE_PRINCIPAL: "ServicePrincipal"}


def lower(text: str) -> str:
    """`text.lower()`, but the same object when it already is lower-case (saves a copy per stored id)."""
    low = text.lower()
    return text if low == text else low


class DirectoryError(Exception):
    """A directory operation that cannot be done (unknown object, duplicate, wrong kind)."""

    def __init__(self, message: str, *, status: int = 400, code: str = "BadRequest") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class NotFound(DirectoryError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=404, code="NotFound")


@dataclass(slots=True)
class User:
    id: str
    user_principal_name: str
    display_name: str
    account_enabled: bool = True
    mail: str | None = None
    given_name: str | None = None
    surname: str | None = None
    job_title: str | None = None
    ordinal: int = 0
    kind: Kind = USER


@dataclass(slots=True)
class Group:
    id: str
    display_name: str
    description: str | None = None
    mail_nickname: str = ""
    security_enabled: bool = True
    mail_enabled: bool = False
    members: dict[str, None] = field(default_factory=dict)  # ordered set of member ids
    ordinal: int = 0
    kind: Kind = GROUP


@dataclass(slots=True)
class ServicePrincipal:
    id: str
    app_id: str
    display_name: str
    account_enabled: bool = True
    ordinal: int = 0
    kind: Kind = SERVICE_PRINCIPAL


DirectoryObject = User | Group | ServicePrincipal
Account = TypeVar("Account", User, ServicePrincipal)  # what can be disabled: accountEnabled


class OrderedIds:
    """Ids kept in insertion order with O(log n) 'page after ordinal k' lookups (stable paging)."""

    __slots__ = ("_by_ordinal", "_ordinals")

    def __init__(self) -> None:
        self._ordinals: list[int] = []
        self._by_ordinal: dict[int, str] = {}

    def add(self, ordinal: int, object_id: str) -> None:
        if self._ordinals and ordinal <= self._ordinals[-1]:
            bisect.insort(self._ordinals, ordinal)
        else:
            self._ordinals.append(ordinal)
        self._by_ordinal[ordinal] = object_id

    def remove(self, ordinal: int) -> None:
        if self._by_ordinal.pop(ordinal, None) is not None:
            i = bisect.bisect_left(self._ordinals, ordinal)
            del self._ordinals[i]

    def __len__(self) -> int:
        return len(self._ordinals)

    def after(self, ordinal: int) -> Iterator[tuple[int, str]]:
        """(ordinal, id) pairs with ordinal > `ordinal`, in order."""
        i = bisect.bisect_right(self._ordinals, ordinal)
        for o in itertools.islice(self._ordinals, i, None):
            yield o, self._by_ordinal[o]


#: How a delta token older than the retained change log is answered: (HTTP status, error code, message).
EXPIRED_410 = (410, "SyncStateNotFound", "The delta token is no longer valid; start a new delta round without a token.")
EXPIRED_400 = (
    400,
    "syncStateNotFound",
    "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
)


class ChangeLog:
    """Change entries; entry n (1-based) has sequence number `base + n`.

    Group log: (group, op, member, kind) with op create | add | remove | update | delete (an update
    names its property in the kind slot). User and service principal logs: (object, op, property,
    None) with op create | update | delete."""

    __slots__ = ("base", "enabled", "entries")

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, str | None, str | None]] = []
        self.base = 0
        self.enabled = True

    @property
    def seq(self) -> int:
        return self.base + len(self.entries)

    def record(self, group_id: str, op: str, member_id: str | None = None, kind: str | None = None) -> None:
        if self.enabled:
            self.entries.append((group_id, op, member_id, kind))

    def window(self, since: int, until: int) -> list[tuple[str, str, str | None, str | None]]:
        if since < self.base:
            raise DirectoryError("delta token is older than the retained change log", code="ResyncRequired")
        return self.entries[since - self.base : until - self.base]

    def compact(self) -> None:
        """Forget all entries (tokens issued before now then need a full resync)."""
        self.base = self.seq
        self.entries = []


@dataclass(slots=True)
class GroupDelta:
    """What changed about one group in a delta window."""

    group_id: str
    deleted: bool = False
    members: dict[str, tuple[bool, str | None]] = field(default_factory=dict)  # id -> (present?, kind)


class Directory:
    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.groups: dict[str, Group] = {}
        self.service_principals: dict[str, ServicePrincipal] = {}
        self.user_order = OrderedIds()
        self.group_order = OrderedIds()
        self.sp_order = OrderedIds()
        self.changes = ChangeLog()
        self.user_changes = ChangeLog()  # (user id, "create" | "update" | "delete", property, None)
        self.sp_changes = ChangeLog()  # (service principal id, "create" | "update" | "delete", property, None)
        #: how a token older than the change log is answered (`compact` sets it): Graph uses both forms
        self.expired_answer: tuple[int, str, str] = EXPIRED_410
        self._ordinal = itertools.count(1)
        self._upn: dict[str, str] = {}
        self._upn_sorted: list[str] = []  # the keys of _upn, sorted: a prefix is a range
        self._mail: dict[str, list[str]] = {}  # casefolded mail -> user ids (Entra does not make it unique)
        self._group_names: dict[str, list[str]] = {}
        self._sp_app: dict[str, str] = {}
        self._sp_names: dict[str, list[str]] = {}
        self._parents: dict[str, list[str]] = {}  # lists, not sets: most objects are in one or two groups
        self._direct: dict[str, tuple[str, ...]] = {}
        self._transitive: dict[str, tuple[str, ...]] = {}
        #: bumped whenever a property of an existing object changes or an object goes (render caches key on it)
        self.revision = 0

    # ---------------------------------------------------------------- lookups
    def get(self, object_id: str) -> DirectoryObject | None:
        oid = object_id.lower()
        return self.users.get(oid) or self.groups.get(oid) or self.service_principals.get(oid)

    def user_by_upn(self, upn: str) -> User | None:
        oid = self._upn.get(upn.casefold())
        return self.users.get(oid) if oid else None

    def users_by_mail(self, mail: str) -> list[User]:
        return [self.users[u] for u in self._mail.get(mail.casefold(), ())]

    def users_with_upn_prefix(self, prefix: str) -> list[User]:
        """Users whose userPrincipalName starts with `prefix`, without case (Graph's `startswith`)."""
        key = prefix.casefold()
        out: list[User] = []
        for upn in itertools.islice(self._upn_sorted, bisect.bisect_left(self._upn_sorted, key), None):
            if not upn.startswith(key):
                break
            out.append(self.users[self._upn[upn]])
        return out

    def user(self, ref: str) -> User | None:
        """A user by object id or userPrincipalName."""
        return self.users.get(ref.lower()) or self.user_by_upn(ref)

    def groups_named(self, name: str) -> list[Group]:
        return [self.groups[g] for g in self._group_names.get(name.casefold(), ())]

    def sp_by_app_id(self, app_id: str) -> ServicePrincipal | None:
        oid = self._sp_app.get(app_id.lower())
        return self.service_principals.get(oid) if oid else None

    def sps_named(self, name: str) -> list[ServicePrincipal]:
        return [self.service_principals[s] for s in self._sp_names.get(name.casefold(), ())]

    def parents(self, object_id: str) -> list[str]:
        return self._parents.get(object_id.lower(), [])

    def resolve(self, ref: str, kinds: Iterable[str] = (USER, GROUP, SERVICE_PRINCIPAL)) -> DirectoryObject:
        """An object by id, userPrincipalName, group or service principal displayName, or appId.

        Raises DirectoryError when nothing or more than one object matches."""
        kinds = set(kinds)
        obj = self.get(ref)
        if obj is not None and obj.kind in kinds:
            return obj
        found: list[DirectoryObject] = []
        if USER in kinds and (u := self.user_by_upn(ref)) is not None:
            found.append(u)
        if GROUP in kinds:
            found.extend(self.groups_named(ref))
        if SERVICE_PRINCIPAL in kinds:
            found.extend(self.sps_named(ref))
            if (sp := self.sp_by_app_id(ref)) is not None and sp not in found:
                found.append(sp)
        if not found:
            raise NotFound(f"no {'/'.join(sorted(kinds))} with id, name or userPrincipalName {ref!r}")
        if len(found) > 1:
            ids = ", ".join(f"{o.kind} {o.id}" for o in found)
            raise DirectoryError(f"{ref!r} is ambiguous: {ids}; use the object id", code="Ambiguous")
        return found[0]

    # ---------------------------------------------------------------- creation
    def _check_new_id(self, object_id: str) -> str:
        oid = lower(object_id)
        if self.get(oid) is not None:
            raise DirectoryError(f"object id {object_id} is already used", status=409, code="Conflict")
        return oid

    def add_user(
        self,
        object_id: str,
        user_principal_name: str,
        display_name: str,
        *,
        account_enabled: bool = True,
        mail: str | None = None,
        given_name: str | None = None,
        surname: str | None = None,
        job_title: str | None = None,
    ) -> User:
        key = user_principal_name.casefold()
        key = user_principal_name if key == user_principal_name else key
        if key in self._upn:
            raise DirectoryError(
                f"userPrincipalName {user_principal_name!r} already exists", status=409, code="Conflict"
            )
        oid = self._check_new_id(object_id)
        user = User(
            oid,
            user_principal_name,
            display_name,
            account_enabled,
            mail,
            given_name,
            surname,
            job_title,
            next(self._ordinal),
        )
        self.users[oid] = user
        self._upn[key] = oid
        bisect.insort(self._upn_sorted, key)
        if mail:
            self._mail.setdefault(mail.casefold(), []).append(oid)
        self.user_order.add(user.ordinal, oid)
        self.user_changes.record(oid, "create")
        return user

    def add_group(
        self,
        object_id: str,
        display_name: str,
        *,
        description: str | None = None,
        mail_nickname: str | None = None,
        security_enabled: bool = True,
        mail_enabled: bool = False,
    ) -> Group:
        oid = self._check_new_id(object_id)
        nick = mail_nickname or "".join(c for c in display_name if c.isalnum()) or oid[:8]
        group = Group(oid, display_name, description, nick, security_enabled, mail_enabled, {}, next(self._ordinal))
        self.groups[oid] = group
        self._group_names.setdefault(display_name.casefold(), []).append(oid)
        self.group_order.add(group.ordinal, oid)
        self.changes.record(oid, "create")
        return group

    def add_service_principal(
        self, object_id: str, app_id: str, display_name: str, *, account_enabled: bool = True
    ) -> ServicePrincipal:
        oid = self._check_new_id(object_id)
        if app_id.lower() in self._sp_app:
            raise DirectoryError(f"appId {app_id} already has a service principal", status=409, code="Conflict")
        sp = ServicePrincipal(oid, lower(app_id), display_name, account_enabled, next(self._ordinal))
        self.service_principals[oid] = sp
        self._sp_app[sp.app_id] = oid
        self._sp_names.setdefault(display_name.casefold(), []).append(oid)
        self.sp_order.add(sp.ordinal, oid)
        self.sp_changes.record(oid, "create")
        return sp

    # ---------------------------------------------------------------- membership
    def _group(self, group_id: str) -> Group:
        group = self.groups.get(group_id.lower())
        if group is None:
            raise NotFound(f"group {group_id} does not exist")
        return group

    def _invalidate(self, group_id: str) -> None:
        """Drop cached expansions of `group_id` and of every group that contains it, cycle-safe."""
        self._direct.pop(group_id, None)
        seen = {group_id}
        queue = deque([group_id])
        while queue:
            gid = queue.popleft()
            self._transitive.pop(gid, None)
            for parent in self._parents.get(gid, ()):
                if parent not in seen:
                    seen.add(parent)
                    queue.append(parent)

    def add_member(self, group_id: str, member_id: str) -> bool:
        """Add a direct member; False if it already was one."""
        group = self._group(group_id)
        member = self.get(member_id)
        if member is None:
            raise NotFound(f"directory object {member_id} does not exist")
        if member.id in group.members:
            return False
        group.members[member.id] = None
        self._parents.setdefault(member.id, []).append(group.id)
        self._invalidate(group.id)
        self.changes.record(group.id, "add", member.id, member.kind)
        return True

    def remove_member(self, group_id: str, member_id: str) -> bool:
        group = self._group(group_id)
        mid = member_id.lower()
        if mid not in group.members:
            return False
        del group.members[mid]
        self._unlink(mid, group.id)
        self._invalidate(group.id)
        obj = self.get(mid)
        self.changes.record(group.id, "remove", mid, obj.kind if obj else None)
        return True

    def _unlink(self, member_id: str, group_id: str) -> None:
        parents = self._parents.get(member_id)
        if parents is not None and group_id in parents:
            parents.remove(group_id)
            if not parents:
                del self._parents[member_id]

    # ---------------------------------------------------------------- updates and deletion
    def set_account_enabled(self, user_id: str, enabled: bool) -> User:
        return self._set_enabled(self.users, self.user_changes, "user", user_id, enabled)

    def set_sp_account_enabled(self, sp_id: str, enabled: bool) -> ServicePrincipal:
        return self._set_enabled(self.service_principals, self.sp_changes, "service principal", sp_id, enabled)

    def _set_enabled(
        self, accounts: dict[str, Account], log: ChangeLog, what: str, object_id: str, enabled: bool
    ) -> Account:
        # Users and service principals are disabled alike in Entra ID: one code path, so that both
        # bump the revision and log the property their delta round `$select`s.
        account = accounts.get(object_id.lower())
        if account is None:
            raise NotFound(f"{what} {object_id} does not exist")
        account.account_enabled = enabled
        self.revision += 1
        log.record(account.id, "update", "accountEnabled")
        return account

    def update_user(self, user_id: str, *, mail: str | None = None, user_principal_name: str | None = None) -> User:
        """Change a user's mail (\"\" clears it) and/or userPrincipalName; each is logged as its property."""
        user = self.users.get(user_id.lower())
        if user is None:
            raise NotFound(f"user {user_id} does not exist")
        if user_principal_name is not None and user_principal_name != user.user_principal_name:
            key = user_principal_name.casefold()
            if self._upn.get(key, user.id) != user.id:
                raise DirectoryError(
                    f"userPrincipalName {user_principal_name!r} already exists", status=409, code="Conflict"
                )
            self._unindex_upn(user)
            user.user_principal_name = user_principal_name
            self._upn[key] = user.id
            bisect.insort(self._upn_sorted, key)
            self.revision += 1
            self.user_changes.record(user.id, "update", "userPrincipalName")
        if mail is not None and (mail or None) != user.mail:
            self._unindex_mail(user)
            user.mail = mail or None
            if user.mail:
                self._mail.setdefault(user.mail.casefold(), []).append(user.id)
            self.revision += 1
            self.user_changes.record(user.id, "update", "mail")
        return user

    def _unindex_upn(self, user: User) -> None:
        key = user.user_principal_name.casefold()
        del self._upn[key]
        del self._upn_sorted[bisect.bisect_left(self._upn_sorted, key)]

    def _unindex_mail(self, user: User) -> None:
        if not user.mail:
            return
        ids = self._mail[user.mail.casefold()]
        ids.remove(user.id)
        if not ids:
            del self._mail[user.mail.casefold()]

    def rename_group(self, group_id: str, display_name: str) -> Group:
        group = self._group(group_id)
        names = self._group_names[group.display_name.casefold()]
        names.remove(group.id)
        if not names:
            del self._group_names[group.display_name.casefold()]
        group.display_name = display_name
        self.revision += 1
        self._group_names.setdefault(display_name.casefold(), []).append(group.id)
        self.changes.record(group.id, "update", None, "displayName")
        return group

    def _detach(self, object_id: str) -> None:
        """Remove an object from every group that contains it (logged as member removals)."""
        for parent in list(self._parents.get(object_id, ())):
            self.remove_member(parent, object_id)

    def delete_group(self, group_id: str) -> Group:
        group = self._group(group_id)
        self._detach(group.id)
        self._invalidate(group.id)
        self.revision += 1
        for mid in group.members:
            self._unlink(mid, group.id)
        del self.groups[group.id]
        names = self._group_names[group.display_name.casefold()]
        names.remove(group.id)
        if not names:
            del self._group_names[group.display_name.casefold()]
        self.group_order.remove(group.ordinal)
        self._transitive.pop(group.id, None)
        self._direct.pop(group.id, None)
        self.changes.record(group.id, "delete")
        return group

    def delete_user(self, user_id: str) -> User:
        user = self.users.get(user_id.lower())
        if user is None:
            raise NotFound(f"user {user_id} does not exist")
        self._detach(user.id)
        self.revision += 1
        del self.users[user.id]
        self._unindex_upn(user)
        self._unindex_mail(user)
        self.user_order.remove(user.ordinal)
        self.user_changes.record(user.id, "delete")
        return user

    def delete_service_principal(self, sp_id: str) -> ServicePrincipal:
        sp = self.service_principals.get(sp_id.lower())
        if sp is None:
            raise NotFound(f"service principal {sp_id} does not exist")
        self._detach(sp.id)
        self.revision += 1
        del self.service_principals[sp.id]
        del self._sp_app[sp.app_id]
        names = self._sp_names[sp.display_name.casefold()]
        names.remove(sp.id)
        if not names:
            del self._sp_names[sp.display_name.casefold()]
        self.sp_order.remove(sp.ordinal)
        self.sp_changes.record(sp.id, "delete")
        return sp

    # ---------------------------------------------------------------- expansion
    def direct_members(self, group_id: str) -> tuple[str, ...]:
        gid = group_id.lower()
        cached = self._direct.get(gid)
        if cached is None:
            cached = tuple(self._group(gid).members)
            self._direct[gid] = cached
        return cached

    def transitive_members(self, group_id: str) -> tuple[str, ...]:
        """Every object reachable through membership (nested groups included, each once, the group
        itself excluded even in a cycle), breadth first."""
        gid = group_id.lower()
        cached = self._transitive.get(gid)
        if cached is not None:
            return cached
        root = self._group(gid)
        seen = {gid}
        out: list[str] = []
        queue: deque[Group] = deque([root])
        groups = self.groups
        while queue:
            for mid in queue.popleft().members:
                if mid in seen:
                    continue
                seen.add(mid)
                out.append(mid)
                sub = groups.get(mid)
                if sub is not None:
                    queue.append(sub)
        result = tuple(out)
        self._transitive[gid] = result
        return result

    # ---------------------------------------------------------------- delta
    def compact(self, answer: tuple[int, str, str] = EXPIRED_410) -> None:
        """Forget every change log: tokens issued before now get `answer` (a full resync is needed)."""
        self.changes.compact()
        self.user_changes.compact()
        self.sp_changes.compact()
        self.expired_answer = answer

    @staticmethod
    def _objects_delta(log: ChangeLog, since: int, until: int, select: Iterable[str] | None) -> list[tuple[str, bool]]:
        tracked = None if select is None else set(select)
        out: dict[str, bool] = {}
        for oid, op, prop, _ in log.window(since, until):
            if op == "update" and tracked is not None and prop not in tracked:
                continue  # Graph tracks only the $select-ed properties
            out.pop(oid, None)
            out[oid] = op == "delete"
        return list(out.items())

    def user_delta(self, since: int, until: int, select: Iterable[str] | None = None) -> list[tuple[str, bool]]:
        """Users changed in (since, until] as (id, deleted), ordered by each user's last change; with
        `select`, an update counts only if it changed a selected property."""
        return self._objects_delta(self.user_changes, since, until, select)

    def sp_delta(self, since: int, until: int, select: Iterable[str] | None = None) -> list[tuple[str, bool]]:
        """Service principals changed in (since, until], as `user_delta`."""
        return self._objects_delta(self.sp_changes, since, until, select)

    def delta(self, since: int, until: int, select: Iterable[str] | None = None) -> list[GroupDelta]:
        """Net group changes in (since, until], ordered by each group's last change. With `select`,
        member changes count only with `members` selected, and a rename only with `displayName`."""
        tracked = None if select is None else set(select)
        out: dict[str, GroupDelta] = {}
        for gid, op, mid, kind in self.changes.window(since, until):
            if tracked is not None and (
                (op in ("add", "remove") and "members" not in tracked) or (op == "update" and kind not in tracked)
            ):
                continue
            d = out.pop(gid, None) or GroupDelta(gid)
            out[gid] = d
            if op == "add" and mid is not None:
                d.members[mid] = (True, kind)
            elif op == "remove" and mid is not None:
                d.members[mid] = (False, kind)
            elif op == "delete":
                d.deleted = True
            elif op == "create":
                d.deleted = False
        return list(out.values())
