"""Policy as code over HTTP: import (with plan and dry run), export, onboarding an iptables dump.

Thin views: they read the body, call one function of rules.importer / rules.exporter /
rules.onboarding and render. A bad document is a 400 naming entry and field, never a 500.
"""

from __future__ import annotations

import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from compiler import values
from core.accounts.permissions import CanEdit, CanView
from core.idempotency.views import idempotent
from rules import exporter, importer
from rules.onboarding import NotADump, describe_loss, losses_refusal, translate_iptables_save

TRUE = ("1", "true", "yes", "on")


class RawBodyParser(BaseParser):
    """Hands the view the body as bytes: the document is YAML or JSON, parsed by the importer."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None) -> bytes:
        return stream.read() if stream is not None else b""


def plain(data):
    """Error bodies hold DRF's ErrorDetail strings: make them plain JSON types first."""
    return json.loads(JSONRenderer().render(data))


class YAMLRenderer(BaseRenderer):
    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return exporter.render(plain(data), "yaml").encode()


class DocumentJSONRenderer(BaseRenderer):
    media_type = "application/json"
    format = "json"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return exporter.render(plain(data), "json").encode()


def flag(request, name: str) -> bool:
    return str(request.query_params.get(name, "")).lower() in TRUE


def body_format(request) -> str | None:
    return "json" if "json" in (request.content_type or "") else None


@extend_schema(
    summary="Import a policy document",
    description="Body: the document (YAML, or JSON with Content-Type application/json). "
    "`dry_run=1` returns the plan and changes nothing; `prune=1` deletes what the document no "
    "longer names, inside the document's `scope` only (all of the policy without one; never a "
    "device when it lists none). A prune that would delete devices, device groups or more than "
    "10 objects needs `confirm_prune=<count>` (the dry run's `confirm_prune`), else a 400 "
    "saying how many and what. One transaction: any bad entry changes nothing (400 naming "
    "entry and field).",
    parameters=[
        OpenApiParameter("dry_run", OpenApiTypes.BOOL),
        OpenApiParameter("prune", OpenApiTypes.BOOL),
        OpenApiParameter("confirm_prune", OpenApiTypes.INT),
    ],
    request={"application/yaml": OpenApiTypes.STR, "application/json": OpenApiTypes.OBJECT},
    responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT},
)
class PolicyImportView(APIView):
    permission_classes = [CanEdit]
    parser_classes = [RawBodyParser]

    @idempotent
    def post(self, request):
        prune = flag(request, "prune") if "prune" in request.query_params else None
        confirm = request.query_params.get("confirm_prune")
        if confirm is not None and not confirm.isdecimal():
            raise ValidationError({"confirm_prune": ["must be a whole number"]})
        try:
            data = importer.load_text(request.data or b"", fmt=body_format(request))
            plan = importer.import_document(
                data,
                prune=prune,
                dry_run=flag(request, "dry_run"),
                actor=None,
                confirm_prune=None if confirm is None else int(confirm),
            )
        except importer.ImportFailed as exc:
            return Response(exc.to_dict(), status=status.HTTP_400_BAD_REQUEST)
        return Response(plan.to_dict())


@extend_schema(
    summary="Export the policy document",
    description="All of it, or narrowed by `ruleset` and/or `device` names (repeatable), "
    "which the narrowed document records in its `scope` (an import with prune deletes nothing "
    "outside it); `format=yaml` (default) or `format=json`. Importing the export changes "
    "nothing.",
    parameters=[
        OpenApiParameter("ruleset", OpenApiTypes.STR, many=True),
        OpenApiParameter("device", OpenApiTypes.STR, many=True),
        OpenApiParameter("format", OpenApiTypes.STR, enum=list(exporter.FORMATS)),
    ],
    responses={200: OpenApiTypes.OBJECT},
)
class PolicyExportView(APIView):
    permission_classes = [CanView]
    renderer_classes = [YAMLRenderer, DocumentJSONRenderer]

    def get(self, request):
        try:
            doc = exporter.export_named(
                rulesets=request.query_params.getlist("ruleset"),
                devices=request.query_params.getlist("device"),
            )
        except exporter.UnknownTargets as exc:
            raise ValidationError({"detail": str(exc)}) from None
        response = Response(doc)
        ext = "json" if getattr(request.accepted_renderer, "format", "yaml") == "json" else "yaml"
        response["Content-Disposition"] = f'inline; filename="rampart-policy.{ext}"'
        return response


@extend_schema(
    summary="Onboard a host: translate an iptables-save dump into a rule set",
    description="Body: JSON {iptables_save, ipset_save?, ruleset?, family?, keep_ipv6?} or the "
    "dump itself as text/plain. Returns the document, every line that was not translated "
    "(line, text, reason, impact: more permissive / more restrictive / verdict-neutral, "
    "lockout), `losses` (the verdict-changing ones, lockout risks first), other software's "
    "chains (Docker, kube-proxy), notes and `ipv6` (what the rule set does with IPv6 when the "
    "dump has none: accepts it, as the host did, unless keep_ipv6 is false). `import=1` also "
    "imports the document (with `dry_run=1`: only its plan); with verdict-changing losses "
    "only with `accept_losses=1`, else 400 listing them. An nftables host: the JSON of "
    "`nft -j list ruleset` in `iptables_save`, or as the body itself (positions in the "
    "JSON array are the `line`s). An empty dump or another tool's output (`nft list "
    "ruleset` text) is a 400 saying what was given.",
    parameters=[
        OpenApiParameter("import", OpenApiTypes.BOOL),
        OpenApiParameter("dry_run", OpenApiTypes.BOOL),
        OpenApiParameter("accept_losses", OpenApiTypes.BOOL),
    ],
    request={"application/json": OpenApiTypes.OBJECT, "text/plain": OpenApiTypes.STR},
    responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT},
)
class FromIptablesSaveView(APIView):
    permission_classes = [CanEdit]
    parser_classes = [RawBodyParser]

    def post(self, request):
        raw = request.data or b""
        if "json" in (request.content_type or ""):
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError as exc:
                raise ValidationError(
                    {"detail": f"JSON syntax error at line {exc.lineno}: {exc.msg}"}
                ) from None
            if not isinstance(body, dict):
                raise ValidationError({"detail": "the body must be a JSON object"})
            if "nftables" in body:  # `nft -j list ruleset` posted as it is
                body = {"iptables_save": raw.decode("utf-8", "replace")}
        else:
            body = {"iptables_save": raw.decode("utf-8", "replace")}
        errors = {
            k: ["must be a string"]
            for k in ("iptables_save", "ipset_save", "ruleset")
            if k in body and not isinstance(body[k], str)
        }
        if "iptables_save" not in body:
            errors.setdefault("iptables_save", ["is required"])
        if not isinstance(body.get("keep_ipv6", True), bool):
            errors["keep_ipv6"] = ["must be true or false"]
        family = body.get("family")
        if family not in (None, 4, 6):
            errors["family"] = ["must be 4 or 6"]
        ruleset = body.get("ruleset") or "onboarded"
        try:
            values.validate_name(ruleset)
        except ValueError as exc:
            errors["ruleset"] = [str(exc)]
        if errors:
            raise ValidationError(errors)
        try:
            result = translate_iptables_save(
                body["iptables_save"],
                body.get("ipset_save") or "",
                ruleset=ruleset,
                family=family,
                keep_ipv6_open=body.get("keep_ipv6", True),
            )
        except NotADump as exc:
            raise ValidationError({"iptables_save": [str(exc)]}) from None
        data = result.to_dict()
        losses = result.losses()
        if flag(request, "import") and losses and not flag(request, "accept_losses"):
            return Response(
                {
                    "detail": losses_refusal(losses),
                    "losses_text": [describe_loss(s) for s in losses],
                    **data,
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        if flag(request, "import"):
            try:
                plan = importer.import_document(
                    result.document, prune=False, dry_run=flag(request, "dry_run")
                )
            except importer.ImportFailed as exc:
                return Response({**data, **exc.to_dict()}, status=status.HTTP_400_BAD_REQUEST)
            data["plan"] = plan.to_dict()
        return Response(data)
