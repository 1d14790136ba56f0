"""Property-based tests: Schemathesis over every operation, Hypothesis over the validators.

Schemathesis runs against a live `wiki-service serve` (the real server stack, middleware and
all), from the app's own OpenAPI document, in both positive and negative generation modes,
with the conformance checks on: no 5xx, every status declared, content types and bodies
matching the declared schemas.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from schemathesis import GenerationMode

from app.posts.models import CONTENT_MAX_LENGTH
from app.users.models import NAME_MAX_LENGTH
from app.validation import Content, Name, SearchQuery
from tests.support.server import Server, Servers

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
]
EXAMPLES_PER_OPERATION = 40  # per generation mode; operations without inputs need fewer
MIN_REQUESTS = 400


@pytest.fixture(scope="module")
def api() -> Iterator[Server]:
    """`wiki-service serve` on the run's database, shared by this module's tests."""
    with Servers() as serve:
        yield serve()


def test_every_operation_conforms_to_the_openapi_document(api):
    schema = schemathesis.openapi.from_url(f"{api.base_url}/openapi.json")
    requests: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12

    for operation in operations:
        raw = operation.definition.raw
        has_inputs = bool(raw.get("parameters") or raw.get("requestBody"))
        # Without inputs there is nothing to make invalid: negative mode has no cases.
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if has_inputs else [])
        for mode in modes:

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                response = case.call_and_validate(base_url=api.base_url, checks=CHECKS)
                requests[operation.label] += 1  # noqa: B023 - check() runs in this same iteration
                statuses[response.status_code] += 1

            check()

    total = sum(requests.values())
    print(f"\nschemathesis: {total} requests over {len(requests)} operations; statuses {dict(statuses)}")
    assert set(requests) == {operation.label for operation in operations}
    assert total >= MIN_REQUESTS
    assert not any(status >= 500 for status in statuses)
    assert statuses[201] > 0 and statuses[422] > 0  # both valid and invalid inputs got through


# -- the validators ---------------------------------------------------------------------

# Any code point: lone surrogates and NUL included (Hypothesis leaves surrogates out by default).
ANY_CHAR = st.one_of(
    st.characters(codec=None, exclude_categories=()),
    st.sampled_from(["\x00", "\ud800", "\udfff", " ", "\t", "\n", "\u3000", "'", '"', "\\"]),
)
ANY_TEXT = st.text(ANY_CHAR, max_size=50)


def _storable_text(value: str, max_length: int) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return 1 <= len(value) <= max_length and value.strip() != "" and "\x00" not in value


def _around(limit: int) -> st.SearchStrategy[str]:
    """Texts of length limit - 1, limit and limit + 1 (a filler and an arbitrary tail)."""
    return st.builds(
        lambda length, tail, filler: (filler * length + tail)[-length:] if length else "",
        st.sampled_from([0, 1, 2, limit - 1, limit, limit + 1]),
        ANY_TEXT,
        st.sampled_from(["a", "é", "✓", "𝄞", " "]),
    )


def _accepts(text_type: object, value: str) -> bool:
    try:
        TypeAdapter(text_type).validate_python(value)
    except ValidationError:
        return False
    return True


@given(value=st.one_of(ANY_TEXT, _around(NAME_MAX_LENGTH)))
def test_name_accepts_exactly_the_storable_names(value):
    assert _accepts(Name, value) == _storable_text(value, NAME_MAX_LENGTH)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(value=st.one_of(ANY_TEXT, _around(CONTENT_MAX_LENGTH)))
def test_content_accepts_exactly_the_storable_texts(value):
    assert _accepts(Content, value) == _storable_text(value, CONTENT_MAX_LENGTH)


@given(value=st.one_of(ANY_TEXT, _around(200)))
def test_search_query_accepts_any_storable_text_up_to_200(value):
    accepted = _accepts(SearchQuery, value)
    try:
        value.encode("utf-8")
        encodable = True
    except UnicodeEncodeError:
        encodable = False
    assert accepted == (1 <= len(value) <= 200 and "\x00" not in value and encodable)


def _post_json(http: httpx.Client, path: str, body: dict) -> httpx.Response:
    # UTF-8 JSON; text with lone surrogates cannot be UTF-8, so it goes as \udXXX escapes,
    # which is valid JSON: the server must cope with what it decodes to.
    try:
        payload = json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        payload = json.dumps(body).encode()
    return http.post(path, content=payload, headers={"content-type": "application/json"})


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.one_of(ANY_TEXT, _around(NAME_MAX_LENGTH)), content=st.one_of(ANY_TEXT, _around(1000)))
def test_names_and_contents_through_the_api(api, db_url, name, content):
    with httpx.Client(base_url=api.base_url, timeout=30) as http:
        user = _post_json(http, "/users", {"name": name})
        if not _storable_text(name, NAME_MAX_LENGTH):
            assert user.status_code == 422, user.text
            return
        assert user.status_code == 201, user.text
        assert user.json()["name"] == name
        post = _post_json(http, "/posts", {"user_id": user.json()["id"], "content": content})
        assert post.status_code == (201 if _storable_text(content, CONTENT_MAX_LENGTH) else 422), post.text
        if post.status_code == 201:
            assert http.get(f"/posts/{post.json()['post_id']}").json()["content"] == content
        assert http.get(f"/users/{user.json()['id']}").json()["name"] == name


def test_a_body_that_is_not_json_gets_a_declared_error(api):
    document = httpx.get(f"{api.base_url}/openapi.json").json()
    with httpx.Client(base_url=api.base_url, timeout=30) as http:
        for path in ("/users", "/posts"):
            declared = {int(code) for code in document["paths"][path]["post"]["responses"]}
            # Not UTF-8 (FastAPI answers 400), not JSON (422), empty (422).
            for body in (b"\xff", b'{"name": "\x80"}', b"\xff\xfe", b"{not json", b""):
                response = http.post(path, content=body, headers={"content-type": "application/json"})
                assert 400 <= response.status_code < 500 and response.status_code in declared, (
                    path,
                    body,
                    response.status_code,
                )


def test_limits_through_the_api(api, db_url):
    with httpx.Client(base_url=api.base_url, timeout=30) as http:
        for name, status in [
            ("n" * NAME_MAX_LENGTH, 201),
            ("n" * (NAME_MAX_LENGTH + 1), 422),
            ("𝄞" * NAME_MAX_LENGTH, 201),
            ("", 422),
            ("   ", 422),
            ("a\x00b", 422),
            ("a\ud800b", 422),
        ]:
            response = _post_json(http, "/users", {"name": name})
            assert response.status_code == status, (len(name), response.text)
        user_id = http.post("/users", json={"name": "limits"}).json()["id"]
        for content, status in [
            ("c" * CONTENT_MAX_LENGTH, 201),
            ("c" * (CONTENT_MAX_LENGTH + 1), 422),
            ("𝄞" * CONTENT_MAX_LENGTH, 201),
            ("\udfff", 422),
            ("\x00", 422),
        ]:
            response = _post_json(http, "/posts", {"user_id": user_id, "content": content})
            assert response.status_code == status, (len(content), response.text[:200])
            if status == 201:
                stored = http.get(f"/posts/{response.json()['post_id']}").json()["content"]
                assert stored == content
        for q, status in [("w" * 200, 200), ("w" * 201, 422), ("a\x00", 422)]:
            assert http.get("/posts", params={"q": q}).status_code == status
