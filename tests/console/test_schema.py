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


def test_one_tag_per_resource(schema):
    tags = {
        path: {tag for op in item.values() if isinstance(op, dict) for tag in op.get("tags", ())}
        for path, item in schema["paths"].items()
    }
    assert tags["/api/v1/addresses/"] == {"addresses"}
    assert tags["/api/v1/address-groups/{id}/"] == {"address-groups"}
    assert tags["/api/v1/deployments/"] == {"deployments"}
    assert tags["/api/v1/audit/"] == {"audit"} and tags["/api/v1/tokens/"] == {"tokens"}
    assert tags["/api/v1/"] == {"root"}
    assert len(set().union(*tags.values())) >= 15
    assert "v1" not in set().union(*tags.values())


def _component(schema: dict, response: dict) -> str:
    return response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]


def test_write_operations_document_their_4xx_answers(schema):
    update = _operation(schema, "/api/v1/rules/{id}/", "patch")["responses"]
    assert {"400", "401", "403", "404", "412", "415"} <= set(update)
    assert _component(schema, update["400"]) == "FieldErrors"
    assert _component(schema, update["412"]) == "ErrorDetail"
    assert schema["components"]["schemas"]["ErrorDetail"]["required"] == ["detail"]
    create = _operation(schema, "/api/v1/rules/", "post")["responses"]
    assert {"400", "403", "415"} <= set(create) and "412" not in create
    delete = _operation(schema, "/api/v1/addresses/{id}/", "delete")["responses"]
    assert {"403", "404", "409", "412"} <= set(delete)
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if method in ("post", "put", "patch", "delete"):
                assert "403" in op["responses"], (method, path)


def test_created_by_is_nullable(schema):
    for name in ("Deployment", "DeploymentDetail"):
        assert schema["components"]["schemas"][name]["properties"]["created_by"]["nullable"]


def test_paging_documents_both_styles(schema):
    params = {p["name"] for p in _operation(schema, "/api/v1/addresses/", "get")["parameters"]}
    assert {"page", "page_size", "limit", "offset"} <= params


def test_operation_ids_are_short(schema):
    assert _operation(schema, "/api/v1/addresses/", "get")["operationId"] == "addresses_list"
