"""Generic API tests, after NetBox's utilities/testing/api.py, for pytest.

A concrete test class names the model and its data and inherits list/get/create/update/
delete tests, each also proving that a viewer cannot write and an anonymous caller gets
nothing:

    class TestAddressObjectAPI(APIViewTestCases.APIViewTestCase):
        model = AddressObject
        basename = "addressobject"                 # URL names: <basename>-list / -detail
        create_data = [{"name": "a", "value": "198.18.0.1"}, ...]
        update_data = {"description": "changed"}
        invalid_data = [({"name": "b", "value": "198.18.0.0/33"}, "value"), ...]
        filter_cases = [({"name": "office"}, 1)]

        def make_objects(self):                   # >= 3 objects, through the services;
            ...                                   # the last one must be deletable, and the
                                                  # first (in list order) should use every
                                                  # kind of reference, so a page of one runs
                                                  # the same prefetches as a page of three

Expected values are compared as subsets: a dict in the data need only match the keys it
names, so `{"default_policy": {"input": "accept"}}` checks one chain.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from django.db import connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext
from django.urls import reverse


def assert_matches(expected: Any, actual: Any, path: str = "") -> None:
    """`actual` (a response) carries every value of `expected` (request data)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} missing from the response"
            assert_matches(value, actual[key], f"{path}.{key}")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


class APIViewTestCases:
    """Namespace of the mixins; pytest collects only the concrete `Test*` classes using them."""

    class Base:
        model: ClassVar[type[Model]]
        basename: ClassVar[str]
        create_data: ClassVar[list[dict]] = []
        update_data: ClassVar[dict] = {}
        invalid_data: ClassVar[list[tuple[dict, str]]] = []
        filter_cases: ClassVar[list[tuple[dict, int]]] = []

        def make_objects(self) -> list[Model]:
            raise NotImplementedError

        def get_create_data(self, objects: list[Model]) -> list[dict]:
            """Override when the data refers to objects made by `make_objects` (by id)."""
            return self.create_data

        def get_invalid_data(self, objects: list[Model]) -> list[tuple[dict, str]]:
            return self.invalid_data

        @pytest.fixture
        def objects(self, db) -> list[Model]:
            made = self.make_objects()
            assert len(made) >= 3, "make_objects must create at least three objects"
            return made

        def list_url(self) -> str:
            return reverse(f"{self.basename}-list")

        def detail_url(self, obj: Model) -> str:
            return reverse(f"{self.basename}-detail", kwargs={"pk": obj.pk})

    class GetObject(Base):
        def test_get_object(self, viewer_api, objects):
            response = viewer_api.get(self.detail_url(objects[0]))
            assert response.status_code == 200, response.data
            assert response.data["id"] == objects[0].pk
            assert response.data["url"].endswith(self.detail_url(objects[0]))

        def test_get_missing_object_is_404(self, viewer_api, objects):
            missing = self.model(pk=max(o.pk for o in objects) + 1000)
            assert viewer_api.get(self.detail_url(missing)).status_code == 404

        def test_get_object_anonymous_is_refused(self, api_client_for, objects):
            assert api_client_for(None).get(self.detail_url(objects[0])).status_code == 401

    class ListObjects(Base):
        def test_list_objects(self, viewer_api, objects):
            response = viewer_api.get(self.list_url())
            assert response.status_code == 200, response.data
            assert response.data["count"] == self.model.objects.count()
            assert {row["id"] for row in response.data["results"]} >= {o.pk for o in objects}

        def test_list_objects_anonymous_is_refused(self, api_client_for, objects):
            assert api_client_for(None).get(self.list_url()).status_code == 401

        def test_list_query_count_does_not_grow_with_the_page(self, viewer_api, objects):
            """Prefetching works: a page of three costs what a page of one does (no N+1)."""
            counts = []
            for size in (1, 3):
                with CaptureQueriesContext(connection) as queries:
                    response = viewer_api.get(self.list_url(), {"page_size": size})
                assert response.status_code == 200
                assert len(response.data["results"]) == size
                counts.append(len(queries))
            assert counts[0] == counts[1], f"page of 1: {counts[0]} queries, page of 3: {counts[1]}"

        def test_list_filters(self, viewer_api, objects):
            for params, expected in self.filter_cases:
                response = viewer_api.get(self.list_url(), params)
                assert response.status_code == 200, (params, response.data)
                assert response.data["count"] == expected, params

        def test_list_pagination(self, viewer_api, objects):
            response = viewer_api.get(self.list_url(), {"page_size": 2})
            assert len(response.data["results"]) == 2
            assert response.data["next"]

    class CreateObject(Base):
        def test_create_objects(self, api, objects):
            data = self.get_create_data(objects)
            assert data, "create_data is empty"
            for item in data:
                response = api.post(self.list_url(), item, format="json")
                assert response.status_code == 201, (item, response.data)
                assert self.model.objects.filter(pk=response.data["id"]).exists()
                assert_matches(item, response.data)
                again = api.get(self.detail_url(self.model(pk=response.data["id"])))
                assert again.data == response.data

        def test_create_is_refused_for_a_viewer(self, viewer_api, objects):
            before = self.model.objects.count()
            response = viewer_api.post(
                self.list_url(), self.get_create_data(objects)[0], format="json"
            )
            assert response.status_code == 403
            assert self.model.objects.count() == before

        def test_create_is_refused_anonymous(self, api_client_for, objects):
            response = api_client_for(None).post(
                self.list_url(), self.get_create_data(objects)[0], format="json"
            )
            assert response.status_code == 401

        def test_invalid_data_is_a_400_naming_the_field(self, api, objects):
            before = self.model.objects.count()
            for item, field in self.get_invalid_data(objects):
                response = api.post(self.list_url(), item, format="json")
                assert response.status_code == 400, (item, response.data)
                assert field in response.data, (item, response.data)
            assert self.model.objects.count() == before

    class UpdateObject(Base):
        def test_update_object(self, api, objects):
            response = api.patch(self.detail_url(objects[0]), self.update_data, format="json")
            assert response.status_code == 200, response.data
            assert_matches(self.update_data, response.data)
            assert api.get(self.detail_url(objects[0])).data == response.data

        def test_update_is_refused_for_a_viewer(self, viewer_api, objects):
            response = viewer_api.patch(
                self.detail_url(objects[0]), self.update_data, format="json"
            )
            assert response.status_code == 403

        def test_update_is_refused_anonymous(self, api_client_for, objects):
            response = api_client_for(None).patch(
                self.detail_url(objects[0]), self.update_data, format="json"
            )
            assert response.status_code == 401

    class DeleteObject(Base):
        def test_delete_object(self, api, objects):
            response = api.delete(self.detail_url(objects[-1]))
            assert response.status_code == 204, response.data
            assert not self.model.objects.filter(pk=objects[-1].pk).exists()

        def test_delete_is_refused_for_a_viewer(self, viewer_api, objects):
            assert viewer_api.delete(self.detail_url(objects[-1])).status_code == 403
            assert self.model.objects.filter(pk=objects[-1].pk).exists()

        def test_delete_is_refused_anonymous(self, api_client_for, objects):
            assert api_client_for(None).delete(self.detail_url(objects[-1])).status_code == 401
            assert self.model.objects.filter(pk=objects[-1].pk).exists()

    class APIViewTestCase(GetObject, ListObjects, CreateObject, UpdateObject, DeleteObject):
        """Everything: list, get, create, update, delete, each with its permission checks."""
