"""The policy domain's API base classes: core.api_base's service-backed viewset and
serializer, wired to rules.services, with every create or update recorded as one revision
per touched rule set."""

from __future__ import annotations

from core.api_base import ServiceModelSerializer, ServiceModelViewSet
from rules.revisions import revision_batch
from rules.services import ObjectInUse, object_delete, object_save


class PolicyModelViewSet(ServiceModelViewSet):
    """Writes in one transaction and one revision per call; deleting an object still in use
    is a 409 naming its users."""

    abstract = True
    delete_service = staticmethod(object_delete)
    write_scope = staticmethod(revision_batch)
    conflict_errors = (ObjectInUse,)


class PolicyModelSerializer(ServiceModelSerializer):
    """Saves through `rules.services.object_save` (full_clean, name checks, revisions)."""

    save_service = staticmethod(object_save)
