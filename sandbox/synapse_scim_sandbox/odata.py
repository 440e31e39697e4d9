"""A small OData `$filter` parser and evaluator, enough for the directory queries clients send.

Supported: `eq`, `ne`, `ge`, `le`, `gt`, `lt`, `in (...)`, `startswith(prop,'x')`, `endswith(prop,'x')`,
`and`, `or`, `not`, parentheses; string literals with `''` escapes, true/false/null, numbers and
bare GUIDs. String comparison is case-insensitive, as in the directory.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]


class FilterError(ValueError):
    pass


_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<punct>[(),])|(?P<word>[^\s(),']+))")
_COMPARE = {"eq", "ne", "ge", "le", "gt", "lt"}


@dataclass(frozen=True)
class Filter:
    predicate: Predicate
    #: (property, values) when the whole filter is `prop eq v` or `prop in (...)`: lets callers use an index
    lookup: tuple[str, tuple[Any, ...]] | None
    properties: frozenset[str]
    #: (property, prefix) when the whole filter is `startswith(prop,'prefix')`: an index can answer it too
    prefix: tuple[str, str] | None = None


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FilterError(f"Invalid filter clause: syntax error at position {pos} in '{text}'.")
        pos = m.end()
        if m.group("str") is not None:
            out.append(("lit", m.group("str")[1:-1].replace("''", "'")))
        elif m.group("punct") is not None:
            out.append(("punct", m.group("punct")))
        else:
            out.append(("word", m.group("word")))
    return out


def _norm(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


class _Parser:
    def __init__(self, text: str, allowed: Collection[str]) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.allowed = {a.casefold(): a for a in allowed}
        self.props: set[str] = set()
        self.text = text

    def peek(self) -> tuple[str, Any] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, Any]:
        tok = self.peek()
        if tok is None:
            raise FilterError(f"Invalid filter clause: unexpected end of '{self.text}'.")
        self.i += 1
        return tok

    def expect(self, kind: str, value: str | None = None) -> Any:
        tok = self.take()
        if tok[0] != kind or (value is not None and str(tok[1]).lower() != value):
            raise FilterError(f"Invalid filter clause: expected {value or kind} near '{tok[1]}'.")
        return tok[1]

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok is not None and tok[0] == "word" and tok[1].lower() == word:
            self.i += 1
            return True
        return False

    def prop(self) -> str:
        name = self.expect("word")
        canonical = self.allowed.get(name.casefold())
        if canonical is None:
            raise FilterError(f"Property '{name}' does not exist as a declared property or extension property.")
        self.props.add(canonical)
        return canonical

    def literal(self) -> Any:
        kind, value = self.take()
        if kind == "lit":
            return value
        if kind != "word":
            raise FilterError(f"Invalid filter clause: expected a literal near '{value}'.")
        low = value.lower()
        if low in ("true", "false"):
            return low == "true"
        if low == "null":
            return None
        try:
            return int(value)
        except ValueError:
            pass
        if re.fullmatch(r"[0-9a-fA-F-]{36}", value):
            return value
        raise FilterError(f"Invalid filter clause: '{value}' is not a literal.")

    def parse(self) -> Predicate:
        pred = self.or_expr()
        if self.peek() is not None:
            raise FilterError(f"Invalid filter clause: unexpected '{self.peek()[1]}'.")  # type: ignore[index]
        return pred

    def or_expr(self) -> Predicate:
        left = self.and_expr()
        while self.keyword("or"):
            right = self.and_expr()
            left = (lambda a, b: lambda o: a(o) or b(o))(left, right)
        return left

    def and_expr(self) -> Predicate:
        left = self.not_expr()
        while self.keyword("and"):
            right = self.not_expr()
            left = (lambda a, b: lambda o: a(o) and b(o))(left, right)
        return left

    def not_expr(self) -> Predicate:
        if self.keyword("not"):
            inner = self.not_expr()
            return lambda o: not inner(o)
        return self.primary()

    def primary(self) -> Predicate:
        tok = self.peek()
        if tok == ("punct", "("):
            self.take()
            inner = self.or_expr()
            self.expect("punct", ")")
            return inner
        if tok is not None and tok[0] == "word" and tok[1].lower() in ("startswith", "endswith"):
            fn = self.take()[1].lower()
            self.expect("punct", "(")
            prop = self.prop()
            self.expect("punct", ",")
            value = _norm(self.literal())
            self.expect("punct", ")")
            if fn == "startswith":
                return lambda o: isinstance(o.get(prop), str) and o[prop].casefold().startswith(value)
            return lambda o: isinstance(o.get(prop), str) and o[prop].casefold().endswith(value)
        prop = self.prop()
        op = self.expect("word").lower()
        if op == "in":
            self.expect("punct", "(")
            values = [_norm(self.literal())]
            while self.peek() == ("punct", ","):
                self.take()
                values.append(_norm(self.literal()))
            self.expect("punct", ")")
            allowed = frozenset(values)
            return lambda o: _norm(o.get(prop)) in allowed
        if op not in _COMPARE:
            raise FilterError(f"Invalid filter clause: unsupported operator '{op}'.")
        value = _norm(self.literal())
        return _compare(prop, op, value)


def _compare(prop: str, op: str, value: Any) -> Predicate:
    def pred(o: Mapping[str, Any]) -> bool:
        actual = _norm(o.get(prop))
        if op == "eq":
            return actual == value
        if op == "ne":
            return actual != value
        if actual is None or value is None:
            return False
        try:
            return {"ge": actual >= value, "le": actual <= value, "gt": actual > value, "lt": actual < value}[op]
        except TypeError:
            return False

    return pred


def parse_filter(text: str, allowed: Collection[str]) -> Filter:
    parser = _Parser(text, allowed)
    predicate = parser.parse()
    lookup = _simple_lookup(parser.toks, parser.allowed)
    return Filter(predicate, lookup, frozenset(parser.props), _simple_prefix(parser.toks, parser.allowed))


def _simple_prefix(toks: list[tuple[str, Any]], allowed: Mapping[str, str]) -> tuple[str, str] | None:
    """`startswith(prop,'v')` alone -> (prop, v)."""
    if (
        len(toks) == 6
        and toks[0][0] == "word"
        and str(toks[0][1]).lower() == "startswith"
        and toks[1] == ("punct", "(")
        and toks[2][0] == "word"
        and toks[3] == ("punct", ",")
        and toks[4][0] == "lit"
        and toks[5] == ("punct", ")")
    ):
        prop = allowed.get(str(toks[2][1]).casefold())
        if prop is not None:
            return prop, str(toks[4][1])
    return None


def _simple_lookup(toks: list[tuple[str, Any]], allowed: Mapping[str, str]) -> tuple[str, tuple[Any, ...]] | None:
    """`prop eq 'v'`, `prop in ('a','b')` or `p eq 'a' or p eq 'b'` -> (prop, values)."""
    if len(toks) == 3 and toks[0][0] == "word" and toks[1] == ("word", "eq"):
        prop = allowed.get(str(toks[0][1]).casefold())
        if prop is not None and toks[2][0] == "lit":
            return prop, (toks[2][1],)
    if len(toks) >= 5 and toks[0][0] == "word" and str(toks[1][1]).lower() == "in" and toks[2] == ("punct", "("):
        prop = allowed.get(str(toks[0][1]).casefold())
        values = [t[1] for t in toks[3:-1] if t[0] == "lit"]
        commas = [t for t in toks[3:-1] if t == ("punct", ",")]
        if (
            prop is not None
            and toks[-1] == ("punct", ")")
            and len(values) == len(commas) + 1
            and len(values) + len(commas) == len(toks) - 4
        ):
            return prop, tuple(values)
    if len(toks) >= 7 and (len(toks) + 1) % 4 == 0:
        clauses = [toks[i : i + 3] for i in range(0, len(toks), 4)]
        joins = [toks[i] for i in range(3, len(toks), 4)]
        if all(str(j[1]).lower() == "or" for j in joins):
            props = {str(c[0][1]).casefold() for c in clauses}
            if len(props) == 1 and all(c[1] == ("word", "eq") and c[2][0] == "lit" for c in clauses):
                prop = allowed.get(props.pop())
                if prop is not None:
                    return prop, tuple(c[2][1] for c in clauses)
    return None
