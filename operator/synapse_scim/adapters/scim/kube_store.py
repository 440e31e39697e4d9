"""The SCIM store in the Kubernetes API (core/scim/store.py's ScimStore; docs/scim.md has the design).

One `KubeScimStore` per ScimProvider. It keeps:

- an index in memory, fed by a list-then-watch of the provider's ScimUser, ScimGroup and
  ScimGroupMembers objects (label synapse-scim.io/scim-provider=<provider>), and by its own writes at
  once (a replica reads its own writes; another replica's arrive through the watch). Every read is
  answered from it: filtering 50,000 users by userName never lists the API server;
- writes that carry the resourceVersion they read: 409 Conflict becomes core's VersionConflict after
  the object was read again (so the service's retry sees the fresh version);
- a group's member ids inline (spec.members) up to `inline_limit`, else in 16 ScimGroupMembers shards
  keyed by the first hex digit of the member id. A group turns sharded by writing a new *shard set*
  (shards named <group>-<set>-<hex>, each with exactly its ids) and then, guarded by its
  resourceVersion, the group pointing at that set: two writers racing over the limit cannot mix their
  shards (the loser's set is deleted). Once sharded, a member change writes the group first (guarded:
  it is what makes concurrent writers retry) and then applies the members added and removed to the
  shards as set operations (each shard guarded by its own resourceVersion), so two concurrent PATCHes
  of one large group lose no member.

The official client is synchronous: calls run in worker threads (asyncio.to_thread), and each watch
runs in a daemon thread that hands its events to the event loop (watch.py)."""

from __future__ import annotations

import asyncio
import copy
import functools
import hashlib
import json
import logging
import random
import re
import secrets
import uuid
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from scim2_models import NotFoundException

from synapse_scim.adapters.scim.watch import GROUP, VERSION, Watcher
from synapse_scim.core.scim.errors import VersionConflict, already_taken
from synapse_scim.core.scim.resources import UNIQUE, Kind, index_keys, unique_key
from synapse_scim.core.scim.store import Record, encode

USERS, GROUPS, SHARDS = "scimusers", "scimgroups", "scimgroupmembers"
KINDS = {USERS: "ScimUser", GROUPS: "ScimGroup", SHARDS: "ScimGroupMembers"}
PROVIDER_LABEL = "synapse-scim.io/scim-provider"
GROUP_LABEL = "synapse-scim.io/scim-group"
MANAGED_BY = "app.kubernetes.io/managed-by"
STANDARD_LABELS = frozenset({PROVIDER_LABEL, GROUP_LABEL, MANAGED_BY})
INLINE_LIMIT = 8192  # member ids kept in the ScimGroup itself (docs/scim.md: 320 KB, a fifth of etcd's limit)
HEX = "0123456789abcdef"
# A Kubernetes object name (an id this endpoint made is one); anything else is not looked up.
_OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,251}[a-z0-9])?")
# At most this many users a request names that the index lacks are looked up in the API server (one
# replica's lag concerns the few users just created; more are a client's mistake, answered at once).
UNSEEN_FETCHES = 16
SHARD_ATTEMPTS = 20  # a shard is written by set operations: retrying it is always safe
# Seconds, at most, before a write that lost a conflict is applied again; doubled with each conflict of
# the same object in a row (up to 16x): two replicas taking in a burst to one group collide less and less.
CONFLICT_PAUSE = 0.05

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def shard_of(member: str) -> str:
    """The hex digit of the shard a member id belongs to: its first character for our UUIDs."""
    first = member[:1].lower()
    return first if first and first in HEX else hashlib.sha256(member.encode()).hexdigest()[0]


def _rv(obj: dict[str, Any]) -> int:
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return 0


KEPT_METADATA = ("name", "uid", "resourceVersion", "labels", "ownerReferences")


def _slim(obj: dict[str, Any]) -> dict[str, Any]:
    """What the index keeps of an object: its spec and the metadata a write needs, not managedFields
    (most of a small object) nor what every object of the store has (apiVersion, kind, namespace, the
    standard labels: _full() puts them back). 50,000 users are held in every replica."""
    metadata = obj.get("metadata") or {}
    kept = {key: metadata[key] for key in KEPT_METADATA if key in metadata}
    labels = kept.get("labels") or {}
    if set(labels) <= STANDARD_LABELS:
        kept.pop("labels", None)
    return {"metadata": kept, "spec": dict(obj.get("spec") or {})}


def _name(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["name"])


# A mapping to one value or, when several share a key, a set of them: most keys have one, and a str
# costs ~200 bytes less than a one-element set (50,000 users, three index entries and a group each).
def _add(holders: dict[str, str | set[str]], key: str, value: str) -> None:
    found = holders.get(key)
    if found is None or found == value:
        holders[key] = value
    elif isinstance(found, set):
        found.add(value)
    else:
        holders[key] = {found, value}


def _discard(holders: dict[str, str | set[str]], key: str, value: str) -> None:
    found = holders.get(key)
    if found == value:
        del holders[key]
    elif isinstance(found, set):
        found.discard(value)
        if len(found) == 1:
            holders[key] = next(iter(found))


async def _together(writes: Iterable[Coroutine[Any, Any, Any]]) -> None:
    """Run the writes at once. The first failure is raised as itself (callers handle ApiException and
    VersionConflict, not an ExceptionGroup), once the others have stopped."""
    try:
        async with asyncio.TaskGroup() as group:
            for write in writes:
                group.create_task(write)
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None


def _members(holders: dict[str, str | set[str]], key: str) -> set[str]:
    found = holders.get(key)
    if found is None:
        return set()
    return set(found) if isinstance(found, set) else {found}


class KubeScimStore:
    def __init__(
        self,
        custom: client.CustomObjectsApi,
        namespace: str,
        provider: str,
        *,
        inline_limit: int = INLINE_LIMIT,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        clock: Callable[[], str] = _now,
        watch_timeout: int = 240,
    ) -> None:
        self.custom = custom
        self.namespace = namespace
        self.provider = provider
        self.inline_limit = inline_limit
        self._new_id = new_id
        self._clock = clock
        self._watch_timeout = watch_timeout
        # The groups and shards as last seen (watch or own write), by plural and name (a group's attributes
        # encoded, as its Record holds them); users are kept only as their Records (docs/scim.md, "Memory":
        # every replica holds all of them), with the metadata a write must carry back when it is more than
        # the standard labels. And the resourceVersion of objects deleted, so that a late event of an older
        # version does not bring them back.
        self._objects: dict[str, dict[str, dict[str, Any]]] = {GROUPS: {}, SHARDS: {}}
        self._user_metadata: dict[str, dict[str, Any]] = {}
        self._deleted: dict[tuple[str, str], int] = {}
        self._shards_of: dict[str, set[str]] = defaultdict(set)  # group id -> shard object names
        # Groups whose shards changed since their Record was built: a 100-member PATCH of a sharded group
        # brings up to 16 shard events, and each rebuild unions up to 50,000 ids, so they are rebuilt once
        # (at the loop's next turn, or before any read or the end of a write, whichever comes first).
        self._stale_groups: set[str] = set()
        self._conflicts: dict[str, int] = {}  # id -> conflicts in a row of its writes (the pause grows)
        # What the reads use, derived from the objects.
        self._records: dict[Kind, dict[str, Record]] = {Kind.USER: {}, Kind.GROUP: {}}
        # (kind, attribute) -> comparison key -> the id holding it, or a set of ids when several do (one
        # string instead of a one-element set is ~200 bytes less per entry, three entries per user).
        self._index: dict[tuple[Kind, str], dict[str, str | set[str]]] = defaultdict(dict)
        # member id -> the group holding it, or a set of groups when several do (as above).
        self._groups_of: dict[str, str | set[str]] = {}
        self._synced: dict[str, asyncio.Event] = {}
        self._watchers: list[Watcher] = []
        self._ready = False
        # Told of every change taken in (a watch event or this replica's own write): (kind, id). The
        # operator's SCIM pokes listen (controller/scim_pokes.py); they must not raise.
        self.listeners: list[Callable[[Kind, str], None]] = []

    # -- the watch -----------------------------------------------------------------------------------

    @property
    def selector(self) -> str:
        return f"{PROVIDER_LABEL}={self.provider}"

    async def start(self) -> None:
        """List and watch the provider's objects; returns once the first listing of each kind is in."""
        for plural in (USERS, GROUPS, SHARDS):
            self._synced[plural] = asyncio.Event()
            watcher = Watcher(
                self.custom,
                plural,
                self.namespace,
                self.selector,
                functools.partial(self.take_listing, plural),
                functools.partial(self.take_event, plural),
                timeout=self._watch_timeout,
            )
            self._watchers.append(watcher)
            watcher.start()
        await self.ready()

    @property
    def is_ready(self) -> bool:
        return self._ready or (bool(self._synced) and all(event.is_set() for event in self._synced.values()))

    async def ready(self) -> None:
        """Until the first listing of each kind is in, every read and write waits (a replica that just
        started answers late rather than wrong)."""
        self._refresh_stale()
        if self._ready:
            return
        for event in self._synced.values():
            await event.wait()
        self._ready = all(event.is_set() for event in self._synced.values())

    def close(self) -> None:
        """Stop the watches (each thread ends at its next event or watch timeout; they are daemons)."""
        for watcher in self._watchers:
            watcher.stop()

    def take_listing(self, plural: str, names: set[str], resource_version: str = "") -> None:
        """A full listing (at start, and after the watch lost track) as of `resource_version` is in (its
        objects came as ADDED events): what it lacks is gone, unless this replica saw it written after
        the listing was taken."""
        as_of = int(resource_version) if resource_version.isdigit() else None
        for name in [each for each in self._names(plural) if each not in names]:
            obj = self._kept(plural, name)
            if obj is not None and (as_of is None or _rv(obj) <= as_of):
                gone = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(as_of or _rv(obj))}}
                self.take_event(plural, "DELETED", gone)
        synced = self._synced.get(plural)
        if synced is not None:
            synced.set()

    def take_event(self, plural: str, kind: str, obj: dict[str, Any]) -> None:
        """Take in one object as seen (a watch event or this replica's own write), unless it is older
        than what the index holds (or than its deletion)."""
        name = _name(obj)
        version = _rv(obj)
        known = self._version(plural, name)
        if known is not None and version and known > version:
            return
        if kind != "DELETED" and version and known == version:
            return  # the watch's copy of this replica's own write: already taken in
        if kind == "DELETED":
            if known is None:
                return
            self._deleted[(plural, name)] = max(version, known)
            self._forget(plural, name)
        else:
            if version and self._deleted.get((plural, name), 0) >= version:
                return
            self._keep(plural, obj)
        if plural == GROUPS:
            self._stale_groups.discard(name)
            self._refresh_group(name)
            self._tell(Kind.GROUP, name)
        elif plural == USERS:
            self._tell(Kind.USER, name)
        elif plural == SHARDS:
            group = str((obj.get("spec") or {}).get("group") or "")
            if kind == "DELETED":
                self._shards_of[group].discard(name)
            else:
                self._shards_of[group].add(name)
            if group:
                self._refresh_later(group)
                self._tell(Kind.GROUP, group)

    def _tell(self, kind: Kind, resource_id: str) -> None:
        for listener in self.listeners:
            listener(kind, resource_id)

    def groups_of(self, user_id: str) -> set[str]:
        """The ids of the groups the user is a member of, as the index holds them now."""
        self._refresh_stale()
        return set(_members(self._groups_of, user_id))

    def _refresh_later(self, group: str) -> None:
        if not self._stale_groups:
            try:
                asyncio.get_running_loop().call_soon(self._refresh_stale)
            except RuntimeError:
                pass  # no running loop (events fed by hand): the next read refreshes
        self._stale_groups.add(group)

    def _refresh_stale(self) -> None:
        stale, self._stale_groups = self._stale_groups, set()
        for group in sorted(stale):
            self._refresh_group(group)

    # -- the index -----------------------------------------------------------------------------------

    def _index_put(self, record: Record) -> None:
        self._records[record.kind][record.id] = record
        for attribute, key in index_keys(record.kind, record.attributes).items():
            _add(self._index[(record.kind, attribute)], key, record.id)

    def _index_drop(self, record: Record) -> None:
        self._records[record.kind].pop(record.id, None)
        for attribute, key in index_keys(record.kind, record.attributes).items():
            _discard(self._index[(record.kind, attribute)], key, record.id)

    def _holders(self, kind: Kind, attribute: str, key: str) -> set[str]:
        return _members(self._index[(kind, attribute)], key)

    # -- what is kept of each object -----------------------------------------------------------------

    def _version(self, plural: str, name: str) -> int | None:
        if plural == USERS:
            record = self._records[Kind.USER].get(name)
            return None if record is None else int(record.version) if record.version.isdigit() else 0
        obj = self._objects[plural].get(name)
        return None if obj is None else _rv(obj)

    def _names(self, plural: str) -> list[str]:
        return list(self._records[Kind.USER] if plural == USERS else self._objects[plural])

    def _kept(self, plural: str, name: str) -> dict[str, Any] | None:
        """The object as far as it is kept (_slim()), its attributes decoded."""
        if plural == USERS:
            record = self._records[Kind.USER].get(name)
            if record is None:
                return None
            return {
                "metadata": {"name": name, "resourceVersion": record.version, **self._user_metadata.get(name, {})},
                "spec": {
                    "attributes": record.attributes,
                    "created": record.created,
                    "lastModified": record.last_modified,
                },
            }
        obj = self._objects[plural].get(name)
        if obj is None or plural != GROUPS:
            return obj
        spec = {**obj["spec"], "attributes": json.loads(obj["spec"]["attributes"])}
        return {**obj, "spec": spec}

    def _keep(self, plural: str, obj: dict[str, Any]) -> None:
        name = _name(obj)
        slim = _slim(obj)
        spec = slim["spec"]
        if plural != USERS:
            if plural == GROUPS:
                spec["attributes"] = encode(spec.get("attributes") or {})
            self._objects[plural][name] = slim
            return
        metadata = slim["metadata"]
        extra = {key: metadata[key] for key in ("labels", "ownerReferences") if metadata.get(key)}
        if extra:
            self._user_metadata[name] = extra
        else:
            self._user_metadata.pop(name, None)
        old = self._records[Kind.USER].get(name)
        if old is not None:
            self._index_drop(old)
        self._index_put(
            Record(
                Kind.USER,
                name,
                encode(spec.get("attributes") or {}),
                str(metadata["resourceVersion"]),
                str(spec.get("created") or ""),
                str(spec.get("lastModified") or ""),
            )
        )

    def _forget(self, plural: str, name: str) -> None:
        if plural != USERS:
            del self._objects[plural][name]
            return
        self._user_metadata.pop(name, None)
        old = self._records[Kind.USER].get(name)
        if old is not None:
            self._index_drop(old)

    def _members_of(self, obj: dict[str, Any]) -> tuple[str, ...]:
        spec = obj.get("spec") or {}
        members: list[str] = list(spec.get("members") or [])
        shard_set = spec.get("shardSet")
        if shard_set:
            group = _name(obj)
            for digit in HEX:
                shard = self._objects[SHARDS].get(f"{group}-{shard_set}-{digit}")
                if shard is not None:
                    members.extend((shard.get("spec") or {}).get("members") or [])
            members = list(dict.fromkeys(members))  # inline leftovers of the move are in a shard too
        return tuple(members)

    def _refresh_group(self, name: str) -> None:
        old = self._records[Kind.GROUP].get(name)
        if old is not None:
            self._index_drop(old)
        obj = self._objects[GROUPS].get(name)
        record = None
        if obj is not None:
            spec = obj.get("spec") or {}
            record = Record(
                Kind.GROUP,
                name,
                spec.get("attributes") or encode({}),
                str(obj["metadata"]["resourceVersion"]),
                str(spec.get("created") or ""),
                str(spec.get("lastModified") or ""),
                self._members_of(obj),
            )
            self._index_put(record)
        # Only the members that came or went: a shard of a 50,000-member group changes a few ids, and
        # the group is refreshed at each of its shards' events.
        before = set(old.members) if old is not None else set()
        after = set(record.members) if record is not None else set()
        for member in before - after:
            _discard(self._groups_of, member, name)
        for member in after - before:
            _add(self._groups_of, member, name)

    # -- reads: from the index -----------------------------------------------------------------------

    def indexed(self, kind: Kind, resource_id: str) -> Record | None:
        """What this replica's index holds for the id, without asking the API server."""
        self._refresh_stale()
        return self._records[kind].get(resource_id)

    async def get(self, kind: Kind, resource_id: str) -> Record | None:
        await self.ready()
        found = self._records[kind].get(resource_id)
        if found is None and await self._fetch_unseen(kind, resource_id):
            found = self._records[kind].get(resource_id)
        return found

    async def lookup(self, kind: Kind, attribute: str, key: str) -> list[Record]:
        await self.ready()
        if attribute == "id":
            found = self._records[kind].get(key)
            return [found] if found is not None else []
        ids = sorted(self._holders(kind, attribute, key))
        return [self._records[kind][each] for each in ids if each in self._records[kind]]

    async def scan(self, kind: Kind) -> list[Record]:
        await self.ready()
        return [self._records[kind][each] for each in sorted(self._records[kind])]

    async def count(self, kind: Kind) -> int:
        await self.ready()
        return len(self._records[kind])

    async def missing_users(self, ids: frozenset[str]) -> frozenset[str]:
        await self.ready()
        missing = [each for each in ids if each not in self._records[Kind.USER]]
        if len(missing) > UNSEEN_FETCHES:
            return frozenset(missing)  # not one replica's lag: no API call per junk id
        found = await asyncio.gather(*(self._fetch_unseen(Kind.USER, each) for each in missing))
        return frozenset(each for each, there in zip(missing, found, strict=True) if not there)

    async def _fetch_unseen(self, kind: Kind, resource_id: str) -> bool:
        """Whether the API server holds a user or group of this provider that the index lacks, taken into
        the index if so. Another replica may have written it a moment ago and this replica's watch not have
        brought it yet (seconds, after an API server restart or an expired watch): a 404, or a member
        refused as unknown, would tell the identity provider that what it just created is gone (the
        two-replica soak's burst of PATCHes to a group created through the other replica got 404s)."""
        if not _OBJECT_NAME.fullmatch(resource_id):
            return False  # no object can have that name: no API call for it
        plural = USERS if kind is Kind.USER else GROUPS
        obj = await self._peek(plural, resource_id)
        if obj is None or ((obj.get("metadata") or {}).get("labels") or {}).get(PROVIDER_LABEL) != self.provider:
            return False
        shard_set = str((obj.get("spec") or {}).get("shardSet") or "")
        if plural == GROUPS and shard_set:
            # Its members are in its shards: in before the group, so that its record is whole at once.
            names = [f"{resource_id}-{shard_set}-{digit}" for digit in HEX]
            for shard in await asyncio.gather(*(self._peek(SHARDS, name) for name in names)):
                if shard is not None:
                    self.take_event(SHARDS, "MODIFIED", shard)
        self.take_event(plural, "MODIFIED", obj)
        self._refresh_stale()
        return resource_id in self._records[kind]

    async def _peek(self, plural: str, name: str) -> dict[str, Any] | None:
        """One object as the API server has it now (None: not found); the index is left as it is."""
        try:
            return cast(
                dict[str, Any],
                await asyncio.to_thread(
                    self.custom.get_namespaced_custom_object, GROUP, VERSION, self.namespace, plural, name
                ),
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _check_unique(self, kind: Kind, attributes: dict[str, Any], own_id: str | None) -> None:
        key = unique_key(kind, attributes)
        if key is None:
            return
        holders = self._holders(kind, UNIQUE[kind], key) - {own_id}
        if holders:
            raise already_taken(UNIQUE[kind], attributes[UNIQUE[kind]])

    # -- the API server ------------------------------------------------------------------------------

    def _labels(self, group: str | None = None) -> dict[str, str]:
        labels = {PROVIDER_LABEL: self.provider, MANAGED_BY: "synapse-scim"}
        if group is not None:
            labels[GROUP_LABEL] = group
        return labels

    async def _create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        created = cast(
            dict[str, Any],
            await asyncio.to_thread(
                self.custom.create_namespaced_custom_object, GROUP, VERSION, self.namespace, plural, body
            ),
        )
        self.take_event(plural, "ADDED", created)
        return created

    async def _replace(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace with the resourceVersion the body carries (409 when it is not the stored one)."""
        replaced = cast(
            dict[str, Any],
            await asyncio.to_thread(
                self.custom.replace_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                plural,
                _name(body),
                body,
            ),
        )
        self.take_event(plural, "MODIFIED", replaced)
        return replaced

    async def _read(self, plural: str, name: str) -> dict[str, Any] | None:
        """Read one object from the API server (not the index), and take it into the index."""
        found = await self._peek(plural, name)
        if found is None:
            known = self._kept(plural, name)
            if known is not None:
                self.take_event(plural, "DELETED", known)
            return None
        self.take_event(plural, "MODIFIED", found)
        return found

    async def _delete(self, plural: str, name: str) -> bool:
        try:
            await asyncio.to_thread(
                self.custom.delete_namespaced_custom_object, GROUP, VERSION, self.namespace, plural, name
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            found = False
        else:
            found = True
        known = self._kept(plural, name)
        if known is not None:
            self.take_event(plural, "DELETED", known)
        return found

    # -- writes --------------------------------------------------------------------------------------

    def _full(self, plural: str, slim: dict[str, Any]) -> dict[str, Any]:
        """A copy of an object as the index keeps it, whole again for a replace (which writes every field:
        what is left out of it is gone, the labels the watch selects by first of all)."""
        body = copy.deepcopy(slim)
        metadata = body["metadata"]
        group = (body.get("spec") or {}).get("group") if plural == SHARDS else None
        metadata["labels"] = {**self._labels(str(group) if group else None), **(metadata.get("labels") or {})}
        metadata["namespace"] = self.namespace
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KINDS[plural], **body}

    def _body(self, plural: str, name: str, spec: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KINDS[plural],
            "metadata": {"name": name, "namespace": self.namespace, "labels": labels},
            "spec": spec,
        }

    async def create(self, kind: Kind, attributes: dict[str, Any], members: tuple[str, ...] = ()) -> Record:
        await self.ready()
        self._check_unique(kind, attributes, None)
        now = self._clock()
        resource_id = self._new_id()
        spec: dict[str, Any] = {"attributes": dict(attributes), "created": now, "lastModified": now}
        if kind is Kind.USER:
            await self._create(USERS, self._body(USERS, resource_id, spec, self._labels()))
            return self._records[Kind.USER][resource_id]
        ids = list(dict.fromkeys(members))
        spec["memberCount"] = len(ids)
        if len(ids) <= self.inline_limit:
            spec["members"] = ids
            await self._create(GROUPS, self._body(GROUPS, resource_id, spec, self._labels()))
        else:
            # The group first (the shards' owner), pointing at a set whose shards follow at once.
            shard_set = secrets.token_hex(2)
            spec["shardSet"] = shard_set
            spec["members"] = []
            group = await self._create(GROUPS, self._body(GROUPS, resource_id, spec, self._labels()))
            await self._write_shard_set(group, shard_set, ids)
        self._refresh_stale()
        return self._records[Kind.GROUP][resource_id]

    async def update(
        self, record: Record, attributes: dict[str, Any], members: tuple[str, ...] | None, *, expected_version: str
    ) -> Record:
        await self.ready()
        plural = USERS if record.kind is Kind.USER else GROUPS
        current = self._kept(plural, record.id)
        if current is None:
            raise NotFoundException(detail=f"{record.kind.value} {record.id} not found")
        self._check_unique(record.kind, attributes, record.id)
        body = self._full(plural, current)
        body["metadata"]["resourceVersion"] = expected_version
        spec = body.setdefault("spec", {})
        spec["attributes"] = dict(attributes)
        spec["lastModified"] = self._clock()
        added: list[str] = []
        removed: list[str] = []
        new_set: str | None = None
        if record.kind is Kind.GROUP and members is not None:
            ids = list(dict.fromkeys(members))
            base = set(record.members)
            added = [each for each in ids if each not in base]
            wanted = set(ids)
            removed = [each for each in record.members if each not in wanted]
            spec["memberCount"] = len(ids)
            if spec.get("shardSet"):
                inline = [each for each in spec.get("members") or [] if each in wanted]
                spec["members"] = inline
            elif len(ids) <= self.inline_limit:
                spec["members"] = ids
            else:
                # Over the limit: a new shard set with exactly these ids, then the group pointing at it.
                new_set = secrets.token_hex(2)
                try:
                    await self._write_shard_set(current, new_set, ids)
                except BaseException:
                    await self._delete_shards(record.id, only_set=new_set)
                    raise
                spec["shardSet"] = new_set
                spec["members"] = []
        try:
            written = await self._replace(plural, body)
        except ApiException as exc:
            if new_set is not None:
                await self._delete_shards(record.id, only_set=new_set)
            if exc.status == 409:
                await self._read(plural, record.id)  # the retry must see the fresh version
                # Another writer won: step aside for a moment so that two writers of one object do
                # not keep colliding in lock step (the service applies the request again).
                lost = self._conflicts[record.id] = self._conflicts.get(record.id, 0) + 1
                await asyncio.sleep(random.uniform(0, CONFLICT_PAUSE * 2 ** min(lost - 1, 4)))
                raise VersionConflict(record.id) from None
            self._conflicts.pop(record.id, None)
            if exc.status == 404:
                await self._read(plural, record.id)
                raise NotFoundException(detail=f"{record.kind.value} {record.id} not found") from None
            raise
        self._conflicts.pop(record.id, None)
        if new_set is not None:
            await self._delete_shards(record.id, keep_set=new_set)
        elif record.kind is Kind.GROUP and (written.get("spec") or {}).get("shardSet") and (added or removed):
            await self._apply_to_shards(written, added, removed)
        self._refresh_stale()
        return self._records[record.kind][record.id]

    async def delete(self, kind: Kind, resource_id: str) -> None:
        await self.ready()
        if kind is Kind.USER:
            if resource_id not in self._records[Kind.USER] and await self._read(USERS, resource_id) is None:
                raise NotFoundException(detail=f"User {resource_id} not found")
            # Out of every group first: a crash in between leaves a user that the provider deletes again.
            for group_id in sorted(_members(self._groups_of, resource_id)):
                await self._remove_member(group_id, resource_id)
            if not await self._delete(USERS, resource_id):
                raise NotFoundException(detail=f"User {resource_id} not found")
            return
        if not await self._delete(GROUPS, resource_id):
            raise NotFoundException(detail=f"Group {resource_id} not found")
        await self._delete_shards(resource_id)

    async def _remove_member(self, group_id: str, member: str) -> None:
        for _ in range(SHARD_ATTEMPTS):
            record = self._records[Kind.GROUP].get(group_id)
            if record is None or member not in record.members:
                return
            try:
                await self.update(
                    record,
                    record.attributes,
                    tuple(each for each in record.members if each != member),
                    expected_version=record.version,
                )
                return
            except VersionConflict:
                continue
            except NotFoundException:
                return
        raise VersionConflict(group_id)

    # -- shards --------------------------------------------------------------------------------------

    def _shard_body(self, group: dict[str, Any], shard_set: str, digit: str, members: list[str]) -> dict[str, Any]:
        group_id = _name(group)
        body = self._body(
            SHARDS,
            f"{group_id}-{shard_set}-{digit}",
            {"group": group_id, "shardSet": shard_set, "shard": digit, "memberCount": len(members), "members": members},
            self._labels(group_id),
        )
        uid = (group.get("metadata") or {}).get("uid")
        if uid:  # the garbage collector removes the shards of a group deleted behind our back
            body["metadata"]["ownerReferences"] = [
                {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ScimGroup", "name": group_id, "uid": uid}
            ]
        return body

    async def _write_shard_set(self, group: dict[str, Any], shard_set: str, ids: Iterable[str]) -> None:
        by_digit: dict[str, list[str]] = defaultdict(list)
        for each in ids:
            by_digit[shard_of(each)].append(each)
        # The shards are independent objects: written at once, not one round trip after another.
        await _together(
            self._create(SHARDS, self._shard_body(group, shard_set, digit, by_digit.get(digit, []))) for digit in HEX
        )

    async def _apply_to_shards(self, group: dict[str, Any], added: list[str], removed: list[str]) -> None:
        shard_set = str(group["spec"]["shardSet"])
        changes: dict[str, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
        for each in added:
            changes[shard_of(each)][0].add(each)
        for each in removed:
            changes[shard_of(each)][1].add(each)
        # One shard's change does not wait for another's.
        await _together(
            self._apply_to_shard(group, shard_set, digit, plus, minus)
            for digit, (plus, minus) in sorted(changes.items())
        )

    async def _apply_to_shard(
        self, group: dict[str, Any], shard_set: str, digit: str, plus: set[str], minus: set[str]
    ) -> None:
        name = f"{_name(group)}-{shard_set}-{digit}"
        for _ in range(SHARD_ATTEMPTS):
            current = self._objects[SHARDS].get(name)
            try:
                if current is None:
                    await self._create(SHARDS, self._shard_body(group, shard_set, digit, sorted(plus)))
                    return
                body = self._full(SHARDS, current)
                ids = [each for each in body["spec"].get("members") or [] if each not in minus]
                present = set(ids)
                ids.extend(sorted(each for each in plus if each not in present))
                body["spec"]["members"] = ids
                body["spec"]["memberCount"] = len(ids)
                await self._replace(SHARDS, body)
                return
            except ApiException as exc:
                if exc.status not in (404, 409):
                    raise
                await self._read(SHARDS, name)
        raise VersionConflict(name)

    async def _delete_shards(self, group_id: str, *, only_set: str | None = None, keep_set: str | None = None) -> None:
        for name in sorted(self._shards_of.get(group_id, set())):
            shard_set = str((self._objects[SHARDS].get(name, {}).get("spec") or {}).get("shardSet") or "")
            if (only_set is not None and shard_set != only_set) or (keep_set is not None and shard_set == keep_set):
                continue
            await self._delete(SHARDS, name)
        if only_set is not None:  # shards written but not yet seen (a failed write in the middle)
            for digit in HEX:
                name = f"{group_id}-{only_set}-{digit}"
                if name not in self._objects[SHARDS]:
                    await self._delete(SHARDS, name)
