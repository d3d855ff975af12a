"""Check request parameters against botocore's service model: what AWS checks and botocore does not.

botocore validates types and required members client-side, but not lengths, patterns,
enums or numeric ranges: AWS refuses those server-side, and moto mostly accepts them.
This walks the operation's input shape over the caller's parameters (before
serialization) and lists every constraint they break.

Patterns: a model's `pattern` is a Java regular expression that AWS applies to the
whole value (Java's `matches()`: "Value 'my role' at 'roleName' failed to satisfy
constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+"), though
Smithy calls the trait unanchored; so the check is a full match. They are compiled with the `regex`
module (pinned in requirements-dev.txt), which understands Java's \\p{L}-style
classes, possessive quantifiers and a range such as [\\w-_]; failing that, with `re`.
A pattern neither can compile is skipped, never fatal, and counted in
`SKIPPED_PATTERNS` (see `skipped_patterns()`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import regex as _regex  # Java-style \p{L} classes; pinned in requirements-dev.txt


@dataclass(frozen=True)
class Violation:
    """One broken constraint: where (member path), which rule, the value sent, and the rule's source."""

    path: str
    rule: str
    value: Any
    source: str = "botocore service model"

    def describe(self) -> str:
        if self.value is None:
            return f"{self.path}: {self.rule}"
        shown = repr(self.value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        size = f" ({len(self.value)} long)" if isinstance(self.value, str | bytes | list | dict) else ""
        return f"{self.path}: {self.rule}; sent {shown}{size}"


class _Matcher(Protocol):
    def fullmatch(self, string: str) -> object: ...


_COMPILED: dict[str, _Matcher | None] = {}
SKIPPED_PATTERNS: dict[str, str] = {}
"""Patterns that could not be compiled (pattern -> why): not checked, only counted."""


def compile_pattern(pattern: str) -> _Matcher | None:
    """The pattern as a matcher with Java's meaning, or None (recorded in SKIPPED_PATTERNS)."""
    if pattern in _COMPILED:
        return _COMPILED[pattern]
    matcher: _Matcher | None = None
    errors: list[str] = []
    # Java writes a character beyond U+FFFF as a UTF-16 surrogate pair: the range \uD800\uDC00-\uDBFF\uDFFF
    # (CloudWatch's and Application Auto Scaling's XML-safe strings) is U+10000-U+10FFFF.
    pattern_text = pattern.replace("\\uD800\\uDC00-\\uDBFF\\uDFFF", "\\U00010000-\\U0010FFFF")
    try:
        matcher = _regex.compile(pattern_text, _regex.VERSION0)
    except _regex.error as exc:
        errors.append(f"regex: {exc}")
    if matcher is None:
        # Java reads a '-' right after a class escape (\w-_) as a literal; Python's re refuses it.
        translated = re.sub(r"(\\[wdsWDS])-", r"\1\\-", pattern_text)
        try:
            matcher = re.compile(translated)
        except re.error as exc:
            errors.append(f"re: {exc}")
    if matcher is None:
        SKIPPED_PATTERNS[pattern] = "; ".join(errors)
    _COMPILED[pattern] = matcher
    return matcher


def skipped_patterns() -> dict[str, str]:
    return dict(SKIPPED_PATTERNS)


def check_shape(shape: Any, value: Any, path: str, found: list[Violation]) -> None:
    """Append to `found` every constraint of `shape` (and its members, recursively) that `value` breaks."""
    if value is None:
        return
    kind = shape.type_name
    meta: Mapping[str, Any] = shape.metadata
    if kind == "structure":
        if not isinstance(value, Mapping):
            return  # a wrong type: botocore's own validation refuses it
        for name in shape.required_members:
            member = shape.members.get(name)
            if name not in value and not (member is not None and member.metadata.get("idempotencyToken")):
                found.append(Violation(f"{path}.{name}", "required member missing", None))
        for name, item in value.items():
            if name in shape.members:
                check_shape(shape.members[name], item, f"{path}.{name}", found)
    elif kind == "list":
        if not isinstance(value, Sequence) or isinstance(value, str | bytes):
            return
        _length(meta, value, path, "items", found)
        for index, item in enumerate(value):
            check_shape(shape.member, item, f"{path}[{index}]", found)
    elif kind == "map":
        if not isinstance(value, Mapping):
            return
        _length(meta, value, path, "entries", found)
        for key, item in value.items():
            check_shape(shape.key, key, f"{path}{{key {key!r}}}", found)
            check_shape(shape.value, item, f"{path}[{key!r}]", found)
    elif kind == "string":
        if not isinstance(value, str):
            return
        _length(meta, value, path, "characters", found)
        if shape.enum and value not in shape.enum:
            found.append(Violation(path, f"not one of the enum {shape.name} {sorted(shape.enum)}", value))
        pattern = meta.get("pattern")
        if pattern is not None:
            matcher = compile_pattern(pattern)
            if matcher is not None and matcher.fullmatch(value) is None:
                found.append(Violation(path, f"does not match pattern {pattern}", value))
    elif kind == "blob":
        if isinstance(value, bytes | bytearray | str):
            _length(meta, value, path, "bytes", found)
    elif kind in {"integer", "long", "float", "double"}:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        if "min" in meta and value < meta["min"]:
            found.append(Violation(path, f"below minimum {meta['min']}", value))
        if "max" in meta and value > meta["max"]:
            found.append(Violation(path, f"above maximum {meta['max']}", value))


def _length(meta: Mapping[str, Any], value: Any, path: str, unit: str, found: list[Violation]) -> None:
    size = len(value)
    if "min" in meta and size < meta["min"]:
        found.append(Violation(path, f"min length {meta['min']} ({unit})", value))
    if "max" in meta and size > meta["max"]:
        found.append(Violation(path, f"max length {meta['max']} ({unit})", value))


def check_params(operation_model: Any, params: Mapping[str, Any]) -> list[Violation]:
    """Every model constraint that `params` (the caller's keyword arguments) break, paths as `Operation.Member`."""
    found: list[Violation] = []
    shape = operation_model.input_shape
    if shape is not None:
        check_shape(shape, params, operation_model.name, found)
    return found
