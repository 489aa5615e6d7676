"""Reading an import's text: YAML (or JSON, a subset of it) into a validated document."""

from __future__ import annotations

import json

import yaml

from compiler import DocumentError, FieldError, PolicyDocument
from rules.importer.plan import ImportFailed
from rules.models import RuleSet


class _Loader(yaml.SafeLoader):
    """Safe YAML that refuses duplicate keys (a silently overwritten key is an ignored one)."""


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_text(text: str | bytes, *, fmt: str | None = None) -> object:
    """Parse YAML (or JSON, a subset of it); ImportFailed with the line on a syntax error."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportFailed([FieldError("document", f"not UTF-8 text: {exc}")]) from None
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportFailed(
                [FieldError("document", f"JSON syntax error at line {exc.lineno}: {exc.msg}")],
                line=exc.lineno,
            ) from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(filter(None, [exc.context, exc.problem]))
        raise ImportFailed(
            [FieldError("document", f"YAML syntax error at line {line}: {problem}")], line=line
        ) from None
    except yaml.YAMLError as exc:
        raise ImportFailed([FieldError("document", f"YAML error: {exc}")]) from None


def parse_document(data: object) -> PolicyDocument:
    """The validated document; its devices and device groups may also name the rule sets
    already stored (one onboarded through from-iptables-save, say), not only its own."""
    known = frozenset(RuleSet.objects.values_list("name", flat=True))
    try:
        return PolicyDocument.from_dict(data, known_rulesets=known)
    except DocumentError as exc:
        raise ImportFailed(exc.errors) from None
