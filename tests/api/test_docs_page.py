"""The Swagger UI page loads its files from this server, not from a CDN."""

import re

from django.contrib.staticfiles import finders
from rest_framework.test import APIClient


def test_swagger_ui_files_are_served_locally(reader_client: APIClient) -> None:
    response = reader_client.get("/api/docs/")

    assert response.status_code == 200
    page = response.content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', page)
    assert sources, page
    for source in sources:
        assert source.startswith("/static/"), source
        assert finders.find(source.removeprefix("/static/")), source
    assert "cdn." not in page
