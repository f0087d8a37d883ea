"""Attack: a JSON body nested tens of thousands of levels deep.

The JSON decoder recurses once per level; 50,000 levels ran it out of stack and the
request ended in a RecursionError, a 500 (and a body a route decodes itself, such as a
scan upload, went the same way). Bad input is a 422 with a reason, before anything
parses it.
"""

from __future__ import annotations

import gzip

import pytest
from fastapi.testclient import TestClient

from fleetguard.api.middleware import MAX_JSON_DEPTH, json_depth_exceeds

LEVELS = 50_000


def nested(levels: int, open_: str = "[", close: str = "]") -> bytes:
    return (open_ * levels + close * levels).encode()


def deep_object(levels: int) -> bytes:
    return ('{"a":' * levels + "1" + "}" * levels).encode()


@pytest.mark.parametrize("body", [nested(LEVELS), deep_object(LEVELS)], ids=["array", "object"])
@pytest.mark.parametrize(
    "path", ["/api/v1/auth/login", "/api/v1/scans", "/api/v1/devices", "/api/v1/nothing"]
)
def test_deep_json_is_refused_before_parsing(client: TestClient, path: str, body: bytes) -> None:
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == {
        "code": "malformed_json",
        "message": f"request body is nested more than {MAX_JSON_DEPTH} levels deep",
        "field": "body",
    }


def test_deep_json_the_route_decodes_itself_is_422_not_500(
    client: TestClient, login_as: object
) -> None:
    """Gzip-encoded (the depth check cannot see inside), or under another content type:
    the route's own json.loads runs out of stack, and that is bad input too."""
    from fleetguard.operators import Role

    admin = login_as(Role.ADMIN)  # type: ignore[operator]
    for headers, body in (
        ({"content-type": "application/json", "content-encoding": "gzip"},
         gzip.compress(nested(LEVELS))),
        ({"content-type": "text/plain"}, nested(LEVELS)),
    ):
        r = admin.client.post("/api/v1/scans", content=body, headers={**headers, **admin.headers()})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "malformed_json"


def test_non_utf8_body_is_malformed_json(client: TestClient) -> None:
    r = client.post("/api/v1/auth/login", content=b'{"username": "\xff\xfe"}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "malformed_json"


def test_depth_limit_counts_only_structure() -> None:
    assert not json_depth_exceeds(nested(MAX_JSON_DEPTH))
    assert json_depth_exceeds(nested(MAX_JSON_DEPTH + 1))
    # Brackets inside strings (escaped quotes included) are text, not structure.
    text = b'{"a": "' + b"[" * 10_000 + b'\\"' + b"{" * 10_000 + b'"}'
    assert not json_depth_exceeds(text)
    # Wide is not deep.
    assert not json_depth_exceeds(b"[" + b"[1]," * 10_000 + b"[1]]")


def test_ordinary_nesting_still_works(client: TestClient) -> None:
    r = client.post("/api/v1/auth/login", json={"username": "nobody", "password": "x"})
    assert r.status_code == 401
