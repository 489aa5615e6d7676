"""The OpenAPI schema is what generated clients are built from: it must generate cleanly and
type the endpoints clients depend on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def schema() -> dict:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def test_schema_generates_without_warnings_or_errors(tmp_path):
    """The same command CI runs; in a fresh process, as spectacular's warnings are per process."""
    out = tmp_path / "schema.yaml"
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "spectacular",
            "--validate",
            "--fail-on-warn",
            "--file",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert out.read_text().startswith("openapi: 3")


def _operation(schema: dict, path: str, method: str) -> dict:
    assert path in schema["paths"], sorted(schema["paths"])
    return schema["paths"][path][method]


def _ref(content: dict) -> str:
    body = content["application/json"]["schema"]
    return body.get("$ref") or body.get("items", {}).get("$ref", "")


def test_bulk_and_move_are_typed(schema):
    bulk = _operation(schema, "/api/v1/rulesets/{id}/rules/bulk/", "post")
    assert _ref(bulk["requestBody"]["content"]).endswith("/RuleBulkRequest")
    assert _ref(bulk["responses"]["200"]["content"]).endswith("/RuleBulkResult")
    items = schema["components"]["schemas"]["RuleBulkRequest"]["properties"]["create"]["items"]
    assert items["$ref"].endswith("/RuleBulkCreateItemRequest")
    move = _operation(schema, "/api/v1/rules/{id}/move/", "post")
    assert _ref(move["requestBody"]["content"]).endswith("/RuleMoveRequest")


def test_nested_rule_list_is_paginated(schema):
    listing = _operation(schema, "/api/v1/rulesets/{id}/rules/", "get")
    assert _ref(listing["responses"]["200"]["content"]).endswith("/PaginatedRuleList")
    params = {p["name"] for p in listing["parameters"]}
    assert {"page", "page_size"} <= params


def test_references_are_lists_of_names(schema):
    rule = schema["components"]["schemas"]["Rule"]["properties"]
    for field in ("sources", "destinations", "services"):
        assert rule[field]["type"] == "array" and rule[field]["items"]["type"] == "string"
    device = schema["components"]["schemas"]["Device"]["properties"]
    assert device["groups"]["items"]["type"] == "string"
    assert device["status"].get("readOnly") is True


def test_filters_are_documented(schema):
    params = {p["name"] for p in _operation(schema, "/api/v1/rules/", "get")["parameters"]}
    assert {"ruleset", "action", "address", "service", "search", "ordering", "page_size"} <= params


@pytest.mark.django_db
def test_schema_and_docs_are_served(client):
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
