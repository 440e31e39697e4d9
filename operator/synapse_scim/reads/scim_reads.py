"""The SCIM subjects of a workspace's bindings, read: the groups identity providers pushed, their members,
and the Entra account each member is (docs/scim.md, "Groups as binding subjects").

Read once per sync, before any binding is resolved, so that every pushed user of every bound group is
matched in one round of Graph lookups (batched, and cached per tenant: a provider pushing 10,000 users
does not cost 10,000 round trips per sync). A failure never turns into a revocation: a provider or group
that does not resolve, or a lookup that failed, makes the bindings that name it incomplete, and the
planner then prunes nothing in their pairs (their members' grants are held).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from synapse_scim.adapters.directory import Directory, DirectoryError
from synapse_scim.adapters.kube import GROUP, VERSION
from synapse_scim.adapters.principal_lookups import PrincipalLookupCache, find_accounts
from synapse_scim.adapters.scim.kube_store import KubeScimStore
from synapse_scim.core.errors import ReasonedError
from synapse_scim.core.matching import (
    DEFAULT_RULES,
    Account,
    Ambiguous,
    Disabled,
    Inactive,
    Lookup,
    Match,
    Matched,
    MatchRule,
    NotMatched,
    ScimIdentity,
    identity,
    match,
    pending,
    unresolved_problem,
)
from synapse_scim.core.model import Principal, Problem
from synapse_scim.core.objects import BindingObject
from synapse_scim.core.reasons import Reason
from synapse_scim.core.scim.resources import Kind, fold
from synapse_scim.core.scim.store import ScimStore

SCIM_GROUP = "ScimGroup"

ProviderKey = tuple[str, str]  # (namespace, provider name)


@dataclass(frozen=True)
class ScimProviderView:
    """A ScimProvider as a sync reads it: its pushed objects and its matching rules."""

    namespace: str
    name: str
    store: ScimStore
    rules: tuple[MatchRule, ...] = DEFAULT_RULES


def matching_rules(provider: Mapping[str, Any]) -> tuple[MatchRule, ...]:
    """spec.principalMatching.rules of a ScimProvider object, in order (the default when unset)."""
    rules = ((provider.get("spec") or {}).get("principalMatching") or {}).get("rules")
    if not rules:
        return DEFAULT_RULES
    return tuple(dict.fromkeys(MatchRule(r) for r in rules))


class ScimSource(Protocol):
    """Where a sync finds a provider's pushed groups: the SCIM endpoint's own index in the operator
    (controller/scim.py), the cluster's objects for `plan --cluster` (ClusterScimSource), or nowhere,
    with the reason why (NoScimSource: `plan` without --cluster)."""

    async def provider(self, namespace: str, name: str) -> ScimProviderView:
        """Raises ReasonedError: SCIM_PROVIDER_NOT_FOUND (a person must fix it), or a transient reason
        when the provider's objects are not loaded yet."""
        ...


@dataclass(frozen=True)
class ScimGroupRead:
    """A pushed group a binding names, with its members as matching needs them."""

    provider: str
    id: str
    display: str
    members: tuple[ScimIdentity, ...]

    @property
    def label(self) -> str:
        return f"{self.provider}: {self.display}"


def subject_selector(subject: Mapping[str, Any]) -> tuple[str, str]:
    """How a ScimGroup subject names its group: ("id" | "externalId" | "displayName", value)."""
    if subject.get("id"):
        return ("id", str(subject["id"]).lower())
    if subject.get("externalId"):
        return ("externalId", str(subject["externalId"]))
    return ("displayName", str(subject.get("name") or ""))


def scim_subject_label(subject: Mapping[str, Any]) -> str:
    attribute, value = subject_selector(subject)
    shown = value if attribute == "displayName" else f"{attribute} {value}"
    return f"ScimGroup {subject.get('provider')}/{shown}"


SubjectKey = tuple[str, str, str, str]  # (namespace, provider, attribute, value)


def subject_key(namespace: str, subject: Mapping[str, Any]) -> SubjectKey:
    attribute, value = subject_selector(subject)
    return (namespace, str(subject.get("provider") or ""), attribute, value)


async def read_group(view: ScimProviderView, attribute: str, value: str, label: str) -> ScimGroupRead:
    """A pushed group and its members, or ReasonedError(SCIM_GROUP_NOT_FOUND / SUBJECT_AMBIGUOUS)."""
    store = view.store
    if attribute == "id":
        record = await store.get(Kind.GROUP, value)
        found = [record] if record is not None else []
    else:
        found = await store.lookup(Kind.GROUP, attribute, fold(value))
    if not found:
        raise ReasonedError(
            Reason.SCIM_GROUP_NOT_FOUND,
            f"{label}: provider {view.name} has pushed no group with {attribute} {value!r} (deleted in the "
            f"identity provider, renamed, or not assigned to the SCIM app yet; `kubectl get scimgroups -n "
            f"{view.namespace}` lists what it pushed); the grants of its former members are held, not revoked, "
            "until the subject resolves or is removed from the binding",
        )
    if len(found) > 1:
        raise ReasonedError(
            Reason.SUBJECT_AMBIGUOUS,
            f"{label}: {len(found)} groups of provider {view.name} have {attribute} {value!r}; name the group "
            "by its SCIM id instead",
        )
    group = found[0]
    members: list[ScimIdentity] = []
    for member in group.members:
        user = await store.get(Kind.USER, member)
        if user is not None:  # a member id without a user: a deletion on its way through the watch
            members.append(identity(user.id, user.attributes))
    display = str(group.attributes.get("displayName") or group.id)
    return ScimGroupRead(view.name, group.id, display, tuple(members))


@dataclass(frozen=True)
class ScimCounts:
    """What became of a binding's pushed members (status.scim)."""

    groups: int = 0
    members: int = 0
    matched: int = 0
    unmatched: int = 0
    inactive: int = 0
    disabled: int = 0

    def as_status(self) -> dict[str, int]:
        return {
            "groups": self.groups,
            "members": self.members,
            "matched": self.matched,
            "unmatched": self.unmatched,
            "inactive": self.inactive,
            "disabled": self.disabled,
        }


@dataclass(frozen=True)
class ScimSubjects:
    """One binding's ScimGroup subjects, resolved."""

    principals: tuple[tuple[Principal, tuple[str, ...]], ...] = ()  # (principal, via)
    problems: tuple[Problem, ...] = ()  # what keeps the binding incomplete (its pairs are not pruned)
    notices: tuple[Problem, ...] = ()  # members that match no single account: they get nothing, nobody else pays
    counts: ScimCounts | None = None  # None: the binding has no ScimGroup subject
    groups: tuple[ScimGroupRead, ...] = ()


@dataclass
class ScimResolution:
    """Every ScimGroup subject of one sync's bindings, and the verdict on each member."""

    groups: dict[SubjectKey, ScimGroupRead | Problem] = field(default_factory=dict)
    verdicts: dict[tuple[str, str, str], Match] = field(default_factory=dict)  # (namespace, provider, user id)
    lookup_problem: Problem | None = None  # the Graph lookups failed: every SCIM subject is incomplete
    lookups: frozenset[Lookup] = frozenset()

    @property
    def empty(self) -> bool:
        return not self.groups

    def group_ids(self) -> frozenset[tuple[str, str, str]]:
        """(namespace, provider, group id) of every pushed group the bindings use."""
        return frozenset((key[0], key[1], g.id) for key, g in self.groups.items() if isinstance(g, ScimGroupRead))

    def providers(self) -> frozenset[ProviderKey]:
        return frozenset((key[0], key[1]) for key in self.groups)

    def unresolved_providers(self) -> frozenset[ProviderKey]:
        """Providers with a subject that did not resolve: any new group of theirs may resolve it."""
        return frozenset((key[0], key[1]) for key, g in self.groups.items() if isinstance(g, Problem))

    def subjects_of(self, b: BindingObject) -> ScimSubjects:
        """The binding's ScimGroup subjects: their matched principals (via "provider: group"), their
        problems and the members that get nothing."""
        principals: dict[str, tuple[Principal, tuple[str, ...]]] = {}
        problems: list[Problem] = []
        notices: dict[str, Problem] = {}
        groups: list[ScimGroupRead] = []
        members: dict[str, Match] = {}
        any_subject = False
        for subject in b.spec.get("subjects") or ():
            if subject.get("kind") != SCIM_GROUP:
                continue
            any_subject = True
            label = scim_subject_label(subject)
            found = self.groups.get(subject_key(b.key.namespace, subject))
            if found is None:
                continue
            if isinstance(found, Problem):
                problems.append(found)
                continue
            if self.lookup_problem is not None:
                problems.append(
                    Problem(
                        self.lookup_problem.reason,
                        f"{label}: matching its members to Entra accounts failed: {self.lookup_problem.message}",
                        subject=label,
                        retry_after=self.lookup_problem.retry_after,
                    )
                )
                continue
            groups.append(found)
            for user in found.members:
                verdict = self.verdicts[(b.key.namespace, found.provider, user.id)]
                members[f"{found.provider}/{user.id}"] = verdict
                if isinstance(verdict, Matched):
                    pid = verdict.account.principal.id
                    # One representative per principal: the first group by label order.
                    via = (found.label,)
                    if pid not in principals or via < principals[pid][1]:
                        principals[pid] = (verdict.account.principal, via)
                else:
                    notice = unresolved_problem(user, verdict, found.provider)
                    if notice is not None and notice.subject is not None:
                        notices[notice.subject] = notice
        if not any_subject:
            return ScimSubjects()
        verdicts = list(members.values())
        counts = ScimCounts(
            groups=len(groups),
            members=len(verdicts),
            matched=sum(isinstance(v, Matched) for v in verdicts),
            unmatched=sum(isinstance(v, NotMatched | Ambiguous) for v in verdicts),
            inactive=sum(isinstance(v, Inactive) for v in verdicts),
            disabled=sum(isinstance(v, Disabled) for v in verdicts),
        )
        return ScimSubjects(
            principals=tuple(principals[k] for k in sorted(principals)),
            problems=tuple(problems),
            notices=tuple(notices[k] for k in sorted(notices)),
            counts=counts,
            groups=tuple(groups),
        )


def scim_subjects(bindings: Iterable[BindingObject]) -> list[tuple[str, Mapping[str, Any]]]:
    """(namespace, subject) of every ScimGroup subject whose wishes this sync reads: deleting and
    suspended bindings' wishes are not read (reads/bindings.py)."""
    return [
        (b.key.namespace, s)
        for b in bindings
        if not (b.deleting or b.suspended)
        for s in b.spec.get("subjects") or ()
        if s.get("kind") == SCIM_GROUP
    ]


async def resolve_scim(
    bindings: Sequence[BindingObject],
    source: ScimSource | None,
    directory: Directory,
    cache: PrincipalLookupCache | None = None,
    *,
    use_cache: bool = True,
) -> ScimResolution:
    """Read every ScimGroup subject of the bindings and match every member, in one round of lookups."""
    resolution = ScimResolution()
    wanted = scim_subjects(bindings)
    if not wanted:
        return resolution
    views: dict[ProviderKey, ScimProviderView | Problem] = {}
    for namespace, subject in wanted:
        key = subject_key(namespace, subject)
        if key in resolution.groups:
            continue
        label = scim_subject_label(subject)
        provider_key = (namespace, key[1])
        if provider_key not in views:
            try:
                views[provider_key] = await source_provider(source, *provider_key)
            except ReasonedError as exc:
                views[provider_key] = Problem(exc.reason, exc.message, retry_after=exc.retry_after)
        view = views[provider_key]
        if isinstance(view, Problem):
            resolution.groups[key] = Problem(view.reason, f"{label}: {view.message}", subject=label)
            continue
        try:
            resolution.groups[key] = await read_group(view, key[2], key[3], label)
        except ReasonedError as exc:
            resolution.groups[key] = Problem(exc.reason, exc.message, subject=label)

    # Every distinct member of every group, matched under its own provider's rules, in one round.
    users: dict[tuple[str, str, str], tuple[ScimIdentity, tuple[MatchRule, ...]]] = {}
    for key, group in resolution.groups.items():
        if isinstance(group, ScimGroupRead):
            view = views[(key[0], key[1])]
            assert isinstance(view, ScimProviderView)
            for user in group.members:
                users[(key[0], group.provider, user.id)] = (user, view.rules)
    # Rule by rule (core/matching.py: stages): a user found by its first lookup needs no other, so a push
    # of users that all match by userName costs one lookup each. A round asks every user's next lookup
    # at once (batched by 20), and the answers of earlier syncs come from the tenant's cache.
    found: dict[Lookup, tuple[Account, ...]] = {}
    while todo := {look for user, rules in users.values() if (look := pending(user, rules, found)) is not None}:
        try:
            found.update(await find_accounts(directory, todo, cache, use_cache=use_cache))
        except DirectoryError as exc:
            resolution.lookups = frozenset(found) | todo
            resolution.lookup_problem = Problem(exc.reason, exc.message, retry_after=exc.retry_after)
            return resolution
    resolution.lookups = frozenset(found)
    for user_key, (user, rules) in users.items():
        resolution.verdicts[user_key] = match(user, rules, found)
    return resolution


class NoScimSource:
    """No pushed group can be read here, and why: every ScimGroup subject is unresolved with
    SCIM_PROVIDER_NOT_FOUND and this explanation (so its binding is incomplete and its pairs are not pruned)."""

    def __init__(self, why: str) -> None:
        self.why = why

    async def provider(self, namespace: str, name: str) -> ScimProviderView:
        raise ReasonedError(Reason.SCIM_PROVIDER_NOT_FOUND, f"ScimProvider {namespace}/{name}: {self.why}")


# What a source of None means: the operator runs without its SCIM endpoint.
ENDPOINT_OFF = NoScimSource(
    "the SCIM endpoint is off in this operator, so no pushed group is known (enable it: the chart's "
    "scim.enabled, or `synapse-scim run --scim-port`)"
)


async def source_provider(source: ScimSource | None, namespace: str, name: str) -> ScimProviderView:
    return await (source or ENDPOINT_OFF).provider(namespace, name)


class ClusterScimSource:
    """The pushed groups as the cluster holds them (ScimProvider, ScimUser, ScimGroup objects), for the
    review tools: each provider's objects are listed once and kept while the source is open."""

    def __init__(self, custom: Any, load_timeout: float = 60.0) -> None:
        self.custom = custom
        self.load_timeout = load_timeout
        self._views: dict[ProviderKey, asyncio.Task[ScimProviderView]] = {}
        self._stores: list[KubeScimStore] = []

    async def provider(self, namespace: str, name: str) -> ScimProviderView:
        key = (namespace, name)
        if key not in self._views:
            self._views[key] = asyncio.ensure_future(self._load(namespace, name))
        return await asyncio.shield(self._views[key])

    async def _load(self, namespace: str, name: str) -> ScimProviderView:
        try:
            obj = await asyncio.to_thread(
                self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, "scimproviders", name
            )
        except ApiException as exc:
            if exc.status == 404:
                raise ReasonedError(
                    Reason.SCIM_PROVIDER_NOT_FOUND,
                    f"ScimProvider {namespace}/{name} does not exist: create it, or fix the subject's provider",
                ) from None
            raise ReasonedError(Reason.DIRECTORY_READ_FAILED, f"ScimProvider {namespace}/{name}: {exc}") from None
        store = KubeScimStore(self.custom, namespace, name)
        self._stores.append(store)
        try:
            await asyncio.wait_for(store.start(), timeout=self.load_timeout)
        except TimeoutError:
            raise ReasonedError(
                Reason.DIRECTORY_READ_FAILED,
                f"ScimProvider {namespace}/{name}: its pushed objects did not load within {self.load_timeout:.0f} s",
            ) from None
        return ScimProviderView(namespace, name, store, matching_rules(obj))

    def close(self) -> None:
        for store in self._stores:
            store.close()
