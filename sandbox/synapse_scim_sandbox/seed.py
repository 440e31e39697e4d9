"""Seed files: the organisation and workspaces a sandbox starts with.

A seed is YAML (or the same structure as a dict). Every key is optional except where noted; unknown
keys are errors (with a "did you mean" hint), and every error names the file, line and key path,
e.g. ``org.yaml:23: groups[1].members[2]: unknown member 'bob@contoso.com' ...``.

```yaml
tenant:
  domain: contoso.onmicrosoft.com     # default sandbox.onmicrosoft.com
  id: 11111111-2222-3333-4444-555555555555   # default: derived from the domain

apps:                                 # app registrations = clients that can get tokens
  - name: synapse-scim-operator       # required; also the displayName of its service principal
    clientId: <guid>                  # default: derived from the name
    objectId: <guid>                  # its service principal's object id; default derived
    secret: s3cret                    # client-secret credential
    certificate: true                 # generate an RSA certificate, written to <cert_dir>/<name>.pem
                                      #   (key + cert, for CertificateCredential); or a path to such a PEM
    federatedToken: true              # workload identity: true = generate one, or the token text;
                                      #   written to <cert_dir>/<name>.federated-token
    graphPermissions: [GroupMember.Read.All, User.Read.All, Application.Read.All]
                                      # Graph app roles; default all read roles; [] = Graph answers 403

users:
  - userPrincipalName: alice@contoso.com   # required (alias: upn)
    displayName: Alice Jones          # default: the part before '@'
    id: <guid>                        # default: derived from the userPrincipalName
    accountEnabled: true
    mail: / givenName: / surname: / jobTitle:

servicePrincipals:
  - displayName: etl-pipeline         # required
    appId: <guid>                     # default derived
    id: <guid>                        # default derived

groups:
  - displayName: Data Engineers       # required
    id: <guid>                        # default derived (needed when two groups share a name)
    description: ...
    mailNickname: ...
    members:                          # users, groups (nesting and cycles allowed), service principals
      - alice@contoso.com             # a string: object id, userPrincipalName, group or service
      - Spark Team                    #   principal displayName, or appId (must be unambiguous)
      - {group: Analysts}             # or typed: {user: ...} | {group: ...} | {servicePrincipal: ...}

workspaces:
  - name: analytics                   # required; endpoint https://127.0.0.1:<port>/analytics
    bigDataPools: [sparkpool]         # items that scopes may name
    scopePools: []
    integrationRuntimes: [AutoResolveIntegrationRuntime]
    linkedServices: [datalake]
    credentials: [WorkspaceSystemIdentity]
    access:                           # what each client may do here: admin (default) | reader | none |
      default: admin                  #   rbac (decided by its own role assignments, e.g. Synapse
      reporting-app: reader           #   Administrator); keys are app names or client ids
    assignments:                      # existing ("manual") role assignments
      - role: Synapse Administrator   # required: name or id
        principal: alice@contoso.com  # required: id or name as for members
        scope: workspaces/analytics   # default: the workspace
        id: <any string>              # default derived
        principalType: User           # default: from the principal's kind
```

Ids not given are uuid5 of the name in a fixed namespace, so the same seed always yields the same
ids. `synthetic_org(...)` builds large seeds (as dicts) for benchmarks and paging tests.
"""

from __future__ import annotations

import base64
import difflib
import json
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .apps import GRAPH_PERMISSIONS, AppRegistration, ClientCertificate
from .directory import GROUP, SERVICE_PRINCIPAL, USER, DirectoryError
from .state import AssignmentError, Settings, State, is_guid, stable_id
from .workspaces import ACCESS_LEVELS, SCOPE_KINDS, TEMPLATE_BY_KIND, load_builtin_roles


class SeedError(ValueError):
    """A seed that cannot be loaded; the message names the file, the line (for YAML) and the key."""


class _Map(dict):
    line: int | None = None
    lines: dict[Any, int]


class _Seq(list):
    line: int | None = None
    lines: list[int]


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    out = _Map()
    out.line = node.start_mark.line + 1
    out.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str | int | float | bool) or key is None:
            raise SeedError(f"line {line}: mapping keys must be plain strings")
        if key in out:
            raise SeedError(f"line {line}: duplicate key {key!r} (first at line {out.lines[key]})")
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = line
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    out = _Seq(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def parse_yaml(text: str, source: str = "<seed>") -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except SeedError as e:
        raise SeedError(f"{source}:{str(e).removeprefix('line ')}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        problem = getattr(e, "problem", None) or str(e)
        context = getattr(e, "context", None)
        raise SeedError(f"{where}: YAML syntax error: {problem}" + (f" ({context})" if context else "")) from None


class _Checker:
    """Type and key checks that report `source:line: path: message`."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, line: int | None, message: str) -> SeedError:
        where = f"{self.source}:{line}" if line else self.source
        return SeedError(f"{where}: {path}: {message}" if path else f"{where}: {message}")

    @staticmethod
    def line_of(container: Any, key: Any = None) -> int | None:
        if key is not None:
            lines = getattr(container, "lines", None)
            if isinstance(lines, dict) and key in lines:
                return lines[key]
            if isinstance(lines, list) and isinstance(key, int) and key < len(lines):
                return lines[key]
        return getattr(container, "line", None)

    def mapping(
        self, value: Any, path: str, line: int | None, keys: tuple[str, ...], required: tuple[str, ...] = ()
    ) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, line, f"expected a mapping with keys {', '.join(keys)}, got {_kind(value)}")
        for key in value:
            if key not in keys:
                hint = difflib.get_close_matches(str(key), keys, n=1)
                raise self.fail(
                    _join(path, key),
                    self.line_of(value, key),
                    f"unknown key {key!r}"
                    + (f" (did you mean {hint[0]!r}?)" if hint else f"; allowed: {', '.join(keys)}"),
                )
        for key in required:
            if value.get(key) in (None, ""):
                raise self.fail(_join(path, key), self.line_of(value), f"required key {key!r} is missing")
        return value

    def sequence(self, value: Any, path: str, line: int | None) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, line, f"expected a list, got {_kind(value)}")
        return value

    def string(self, container: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str | None:
        value = container.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(_join(path, key), self.line_of(container, key), f"expected a string, got {_kind(value)}")
        return str(value)

    def guid(self, container: Mapping[str, Any], key: str, path: str, default: str) -> str:
        value = self.string(container, key, path)
        if value is None:
            return default
        if not is_guid(value):
            raise self.fail(_join(path, key), self.line_of(container, key), f"{value!r} is not a GUID")
        return value.lower()

    def boolean(self, container: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = container.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(_join(path, key), self.line_of(container, key), f"expected true or false, got {value!r}")
        return value

    def names(self, container: Mapping[str, Any], key: str, path: str) -> list[str]:
        items = self.sequence(container.get(key), _join(path, key), self.line_of(container, key))
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item or "/" in item:
                raise self.fail(
                    f"{_join(path, key)}[{i}]", self.line_of(items, i), f"expected a name without '/', got {item!r}"
                )
            out.append(item)
        return out


def _kind(value: Any) -> str:
    return {
        dict: "a mapping",
        _Map: "a mapping",
        list: "a list",
        _Seq: "a list",
        str: "a string",
        bool: "a boolean",
        type(None): "nothing",
    }.get(type(value), type(value).__name__)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


_TOP = ("tenant", "apps", "users", "servicePrincipals", "groups", "workspaces")
_APP = ("name", "clientId", "objectId", "secret", "certificate", "federatedToken", "graphPermissions")
_USER = ("userPrincipalName", "upn", "displayName", "id", "accountEnabled", "mail", "givenName", "surname", "jobTitle")
_SP = ("displayName", "appId", "id", "accountEnabled")
_GROUP = ("displayName", "id", "description", "mailNickname", "securityEnabled", "members")
_WS = ("name", *SCOPE_KINDS, "access", "assignments")
_ASSIGNMENT = ("role", "principal", "scope", "id", "principalType")
_MEMBER_KINDS = {"user": (USER,), "group": (GROUP,), "servicePrincipal": (SERVICE_PRINCIPAL,)}


def load_seed(
    seed: str | Path | Mapping[str, Any] | None, *, settings: Settings | None = None, base_dir: Path | None = None
) -> State:
    """Build a State from a seed file path, a YAML string (containing a newline) or a dict."""
    if seed is None:
        data: Any = {}
        source = "<empty seed>"
    elif isinstance(seed, Mapping):
        data, source = seed, "<seed>"
    elif isinstance(seed, str) and "\n" in seed:
        data, source = parse_yaml(seed), "<seed>"
    else:
        path = Path(seed)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise SeedError(f"{path}: cannot read seed file: {e.strerror}") from None
        source = str(path)
        data = parse_yaml(text, source)
        base_dir = base_dir or path.parent
    return _Builder(source, settings, base_dir or Path.cwd()).build(data if data is not None else {})


class _Builder:
    def __init__(self, source: str, settings: Settings | None, base_dir: Path) -> None:
        self.c = _Checker(source)
        self.settings = settings
        self.base_dir = base_dir

    def build(self, data: Any) -> State:
        c = self.c
        top = c.mapping(data, "", getattr(data, "line", 1), _TOP)
        tenant = c.mapping(top.get("tenant") or {}, "tenant", c.line_of(top, "tenant"), ("domain", "id"))
        domain = c.string(tenant, "domain", "tenant", "sandbox.onmicrosoft.com") or "sandbox.onmicrosoft.com"
        state = State(c.guid(tenant, "id", "tenant", stable_id("tenant", domain)), domain, self.settings)
        d = state.directory
        d.changes.enabled = False  # the seed is the starting point, not a change
        self._each(
            top, "users", _USER, (), lambda v, p: self._user(state, v, p), required_any=("userPrincipalName", "upn")
        )
        self._each(top, "servicePrincipals", _SP, ("displayName",), lambda v, p: self._sp(state, v, p))
        self._each(top, "apps", _APP, ("name",), lambda v, p: self._app(state, v, p))
        groups: list[tuple[Mapping[str, Any], str, str]] = []
        self._each(
            top, "groups", _GROUP, ("displayName",), lambda v, p: groups.append((v, p, self._group(state, v, p)))
        )
        for value, path, gid in groups:
            self._members(state, value, path, gid)
        self._each(top, "workspaces", _WS, ("name",), lambda v, p: self._workspace(state, v, p))
        d.changes.enabled = True
        return state

    def _each(
        self,
        top: Mapping[str, Any],
        key: str,
        keys: tuple[str, ...],
        required: tuple[str, ...],
        fn: Callable[[Mapping[str, Any], str], Any],
        required_any: tuple[str, ...] = (),
    ) -> None:
        c = self.c
        items = c.sequence(top.get(key), key, c.line_of(top, key))
        for i, item in enumerate(items):
            path = f"{key}[{i}]"
            value = c.mapping(item, path, c.line_of(items, i), keys, required)
            if required_any and not any(value.get(k) for k in required_any):
                raise c.fail(path, c.line_of(value), f"required key {required_any[0]!r} is missing")
            try:
                fn(value, path)
            except (DirectoryError, AssignmentError) as e:
                raise c.fail(path, c.line_of(value), str(e)) from None

    def _user(self, state: State, v: Mapping[str, Any], path: str) -> None:
        c = self.c
        key = "userPrincipalName" if "userPrincipalName" in v else "upn"
        upn = c.string(v, key, path) or ""
        if "@" not in upn:
            raise c.fail(_join(path, key), c.line_of(v, key), f"{upn!r} is not a userPrincipalName (no '@')")
        state.directory.add_user(
            c.guid(v, "id", path, stable_id("user", upn)),
            upn,
            c.string(v, "displayName", path, upn.split("@")[0]) or upn,
            account_enabled=c.boolean(v, "accountEnabled", path, True),
            mail=c.string(v, "mail", path),
            given_name=c.string(v, "givenName", path),
            surname=c.string(v, "surname", path),
            job_title=c.string(v, "jobTitle", path),
        )

    def _sp(self, state: State, v: Mapping[str, Any], path: str) -> None:
        c = self.c
        name = c.string(v, "displayName", path) or ""
        state.directory.add_service_principal(
            c.guid(v, "id", path, stable_id("servicePrincipal", name)),
            c.guid(v, "appId", path, stable_id("app", name)),
            name,
            account_enabled=c.boolean(v, "accountEnabled", path, True),
        )

    def _app(self, state: State, v: Mapping[str, Any], path: str) -> None:
        c = self.c
        name = c.string(v, "name", path) or ""
        app = AppRegistration(
            name,
            c.guid(v, "clientId", path, stable_id("app", name)),
            c.guid(v, "objectId", path, stable_id("servicePrincipal", name)),
            secret=c.string(v, "secret", path),
        )
        cert = v.get("certificate")
        if cert is True:
            app.certificate = _generated_certificate(name)
        elif isinstance(cert, str):
            pem_path = (self.base_dir / cert).resolve()
            try:
                pem = pem_path.read_bytes()
                app.certificate = ClientCertificate.from_pem(pem, _private_key_block(pem))
            except (OSError, ValueError) as e:
                raise c.fail(
                    _join(path, "certificate"),
                    c.line_of(v, "certificate"),
                    f"cannot use certificate {str(pem_path)!r}: {e}",
                ) from None
        elif cert not in (None, False):
            raise c.fail(
                _join(path, "certificate"),
                c.line_of(v, "certificate"),
                "expected true or the path of a PEM file with key and certificate",
            )
        fed = v.get("federatedToken")
        if fed is True:
            app.federated_token = _federated_token(name, state.tenant_id, app.client_id)
        elif isinstance(fed, str) and fed:
            app.federated_token = fed
        elif fed not in (None, False):
            raise c.fail(
                _join(path, "federatedToken"), c.line_of(v, "federatedToken"), "expected true or the token text"
            )
        if "graphPermissions" in v:
            perms = c.names(v, "graphPermissions", path)
            for i, p in enumerate(perms):
                if p not in GRAPH_PERMISSIONS:
                    items = v["graphPermissions"]
                    raise c.fail(
                        f"{path}.graphPermissions[{i}]",
                        c.line_of(items, i),
                        f"unknown permission {p!r}; known: {', '.join(GRAPH_PERMISSIONS)}",
                    )
            app.graph_permissions = tuple(perms)
        if not (app.secret or app.certificate or app.federated_token):
            raise c.fail(path, c.line_of(v), "an app needs at least one of secret, certificate, federatedToken")
        state.add_app(app)

    def _group(self, state: State, v: Mapping[str, Any], path: str) -> str:
        c = self.c
        name = c.string(v, "displayName", path) or ""
        group = state.directory.add_group(
            c.guid(v, "id", path, stable_id("group", name)),
            name,
            description=c.string(v, "description", path),
            mail_nickname=c.string(v, "mailNickname", path),
            security_enabled=c.boolean(v, "securityEnabled", path, True),
        )
        return group.id

    def _members(self, state: State, v: Mapping[str, Any], path: str, gid: str) -> None:
        c = self.c
        items = c.sequence(v.get("members"), _join(path, "members"), c.line_of(v, "members"))
        for i, item in enumerate(items):
            mpath, line = f"{path}.members[{i}]", c.line_of(items, i)
            kinds: tuple[str, ...] = (USER, GROUP, SERVICE_PRINCIPAL)
            ref = item
            if isinstance(item, Mapping):
                if len(item) != 1 or next(iter(item)) not in _MEMBER_KINDS:
                    raise c.fail(mpath, line, "a typed member is {user: ...}, {group: ...} or {servicePrincipal: ...}")
                key = next(iter(item))
                kinds, ref = _MEMBER_KINDS[key], item[key]
            if not isinstance(ref, str) or not ref:
                raise c.fail(mpath, line, f"expected a member reference (id or name), got {_kind(ref)}")
            try:
                member = state.directory.resolve(ref, kinds)
                state.directory.add_member(gid, member.id)
            except DirectoryError as e:
                raise c.fail(mpath, line, f"unknown member {ref!r}: {e}" if e.status == 404 else str(e)) from None

    def _workspace(self, state: State, v: Mapping[str, Any], path: str) -> None:
        c = self.c
        name = c.string(v, "name", path) or ""
        if "/" in name or not name.replace("-", "").isalnum():
            raise c.fail(
                _join(path, "name"), c.line_of(v, "name"), f"{name!r} is not a workspace name (letters, digits and '-')"
            )
        ws = state.add_workspace(name)
        for kind in SCOPE_KINDS:
            ws.items[kind].update(c.names(v, kind, path))
        access = c.mapping(
            v.get("access") or {},
            _join(path, "access"),
            c.line_of(v, "access"),
            ("default", *(a.name for a in state.apps.values()), *state.apps),
        )
        for key, level in access.items():
            if level not in ACCESS_LEVELS:
                raise c.fail(
                    f"{path}.access.{key}",
                    c.line_of(access, key),
                    f"unknown access level {level!r}; use one of {', '.join(ACCESS_LEVELS)}",
                )
            if key == "default":
                ws.default_access = level
            else:
                app = state.app(key) or next(a for a in state.apps.values() if a.name == key)
                ws.access[app.client_id] = level
        items = c.sequence(v.get("assignments"), _join(path, "assignments"), c.line_of(v, "assignments"))
        for i, item in enumerate(items):
            apath = f"{path}.assignments[{i}]"
            a = c.mapping(item, apath, c.line_of(items, i), _ASSIGNMENT, ("role", "principal"))
            role = c.string(a, "role", apath) or ""
            if state.roles.resolve(role) is None:
                names = [r.name for r in state.roles.all]
                hint = difflib.get_close_matches(role, names, n=1)
                raise c.fail(
                    _join(apath, "role"),
                    c.line_of(a, "role"),
                    f"unknown Synapse role {role!r}"
                    + (f" (did you mean {hint[0]!r}?)" if hint else f"; built-in roles: {', '.join(names)}"),
                )
            try:
                state.grant(
                    name,
                    role,
                    c.string(a, "principal", apath) or "",
                    c.string(a, "scope", apath),
                    c.string(a, "id", apath),
                    c.string(a, "principalType", apath),
                )
            except (DirectoryError, AssignmentError) as e:
                key = "principal" if isinstance(e, DirectoryError) else ("scope" if "cope" in str(e) else "role")
                raise c.fail(_join(apath, key), c.line_of(a, key if key in a else None), str(e)) from None


_CERT_CACHE: dict[str, ClientCertificate] = {}


def _generated_certificate(name: str) -> ClientCertificate:
    """An RSA certificate per app name, generated once per process (RSA key generation is slow)."""
    if name not in _CERT_CACHE:
        _CERT_CACHE[name] = ClientCertificate.generate(name)
    return _CERT_CACHE[name]


def _private_key_block(pem: bytes) -> bytes:
    start = pem.find(b"-----BEGIN PRIVATE KEY-----")
    if start < 0:
        start = pem.find(b"-----BEGIN RSA PRIVATE KEY-----")
    if start < 0:
        return b""
    end = pem.find(b"-----END", start)
    end = pem.find(b"\n", end)
    return pem[start : end + 1 if end >= 0 else len(pem)]


def _federated_token(name: str, tenant_id: str, client_id: str) -> str:
    """A JWT-shaped token like the one the kubelet projects for a workload identity service account."""

    def enc(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    claims = {
        "aud": ["api://AzureADTokenExchange"],
        "iss": "https://sandbox.oidc.local/",
        "sub": f"system:serviceaccount:synapse-scim:{name}",
        "client_id": client_id,
        "tid": tenant_id,
    }
    return f"{enc({'alg': 'RS256', 'kid': 'sandbox'})}.{enc(claims)}.{uuid.uuid5(uuid.NAMESPACE_URL, name).hex}"


# --------------------------------------------------------------------------- synthetic organisations
def synthetic_org(
    *,
    users: int = 1000,
    groups: int = 100,
    members_per_group: int = 20,
    nesting: float = 0.2,
    cycles: int = 0,
    service_principals: int = 10,
    disabled: float = 0.02,
    assignments: int = 0,
    large_groups: int = 0,
    large_group_size: int = 1000,
    workspace: str = "synthetic",
    workspaces: Sequence[str] = (),
    pools: int = 3,
    seed: int = 0,
    app_secret: str = "sandbox-secret",
) -> dict[str, Any]:
    """A large seed (dict) with deterministic ids.

    - `members_per_group` users per group (each group gets a contiguous slice of users, so groups
      overlap a little); the first `large_groups` groups get `large_group_size` users instead;
    - `nesting`: fraction of groups nested into an earlier group; `cycles`: extra back-edges that close
      membership cycles;
    - `workspaces`: the names of several workspaces (default: the one named `workspace`), each with
      `pools` items of every scope kind;
    - `assignments` role assignments in the first workspace, over users, groups and service principals,
      spread over every (role, scope) pair the workspace allows (all distinct).
    One app registration `synapse-scim-operator` with client secret `app_secret`.
    """
    rng = random.Random(seed)

    user_ids = [stable_id("user", f"u{i}") for i in range(users)]
    out_users = [
        {
            "id": uid,
            "userPrincipalName": f"user{i}@synthetic.example",
            "displayName": f"User {i}",
            **({"accountEnabled": False} if rng.random() < disabled else {}),
        }
        for i, uid in enumerate(user_ids)
    ]
    sp_ids = [stable_id("servicePrincipal", f"sp{i}") for i in range(service_principals)]
    out_sps = [
        {"id": sid, "appId": stable_id("app", f"sp{i}"), "displayName": f"service-{i}"} for i, sid in enumerate(sp_ids)
    ]
    group_ids = [stable_id("group", f"g{i}") for i in range(groups)]
    out_groups: list[dict[str, Any]] = []
    for i, g in enumerate(group_ids):
        members: list[str] = []
        if users:
            size = large_group_size if i < large_groups else members_per_group
            start = (i * members_per_group) % users
            members = [user_ids[(start + k) % users] for k in range(min(size, users))]
        if sp_ids and i % 10 == 0:
            members.append(sp_ids[i % len(sp_ids)])
        out_groups.append({"id": g, "displayName": f"Group {i}", "members": members})
    for i in range(1, groups):
        if rng.random() < nesting:
            out_groups[rng.randrange(i)]["members"].append(group_ids[i])
    for _ in range(min(cycles, groups // 2)):
        a, b = rng.sample(range(groups), 2)
        for x, y in ((a, b), (b, a)):
            if group_ids[y] not in out_groups[x]["members"]:
                out_groups[x]["members"].append(group_ids[y])
    items = {k: [f"{k[:-1]}{j}" for j in range(pools)] for k in SCOPE_KINDS}
    names = list(workspaces) or [workspace]
    out_workspaces: list[dict[str, Any]] = [{"name": name, **items} for name in names]
    ws, workspace = out_workspaces[0], names[0]
    if assignments:
        scopes = [f"workspaces/{workspace}"] + [
            f"workspaces/{workspace}/{k}/{n}" for k in SCOPE_KINDS for n in items[k]
        ]
        templates = {s: TEMPLATE_BY_KIND[None if s.count("/") == 1 else s.split("/")[2]] for s in scopes}
        combos = [(r.id, s) for r in load_builtin_roles() for s in scopes if templates[s] in r.scopes]
        principals = user_ids + group_ids + sp_ids
        if assignments > len(principals) * len(combos):
            raise ValueError(f"at most {len(principals) * len(combos)} distinct assignments are possible")
        ws["assignments"] = [
            {
                "role": combos[(i // len(principals)) % len(combos)][0],
                "principal": principals[i % len(principals)],
                "scope": combos[(i // len(principals)) % len(combos)][1],
                "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            }
            for i in range(assignments)
        ]
    return {
        "tenant": {"domain": "synthetic.example"},
        "apps": [{"name": "synapse-scim-operator", "secret": app_secret}],
        "users": out_users,
        "servicePrincipals": out_sps,
        "groups": out_groups,
        "workspaces": out_workspaces,
    }
