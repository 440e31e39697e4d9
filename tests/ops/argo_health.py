"""Evaluate the Argo CD health checks the way Argo CD does: Lua 5.1 (Argo embeds gopher-lua, a 5.1
interpreter), the live object as the global `obj`, a table {status, message} returned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lupa.lua51 import LuaRuntime

HEALTH = Path(__file__).resolve().parents[2] / "health" / "argocd"
KINDS = ("SynapseRoleBinding", "SynapseWorkspace")


def script(kind: str) -> Path:
    return HEALTH / "synapse-scim.io" / kind / "health.lua"


def _to_lua(lua: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return lua.table_from({k: _to_lua(lua, v) for k, v in value.items() if v is not None})
    if isinstance(value, list | tuple):
        return lua.table_from([_to_lua(lua, v) for v in value])
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # JSON numbers reach Argo's Lua as float64
    return value


def health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) of `obj` according to health/argocd/synapse-scim.io/<kind>/health.lua."""
    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = _to_lua(lua, obj)
    hs = lua.execute(script(kind).read_text())
    assert hs is not None, "health.lua must return hs"
    return hs["status"], hs["message"]
