"""GET /api/ lists the API's collections for a client that starts there."""

from typing import Any

from rest_framework.test import APIClient


def test_root_links_collections(db: Any) -> None:
    response = APIClient().get("/api/")

    assert response.status_code == 200
    links = response.json()["links"]
    assert links["runs"] == "http://testserver/api/runs/"
    assert links["policies/export"] == "http://testserver/api/policies/export/"
    assert links["auth/token"] == "http://testserver/api/auth/token/"
    for url in links.values():
        assert "<" not in url


def test_root_rejects_query_parameters(db: Any) -> None:
    response = APIClient().get("/api/?bogus=1")

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "bogus"
    assert error["code"] == "unknown_field"
