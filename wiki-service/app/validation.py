"""Input types shared by the domains: ids, names and texts PostgreSQL can store."""

from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from app.limits import BIGINT_MAX, CONTENT_MAX_LENGTH, NAME_MAX_LENGTH


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and UTF-8 cannot encode a lone surrogate.
    if "\x00" in value:
        raise ValueError("must not contain the NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Id = Annotated[int, Field(ge=1, le=BIGINT_MAX, strict=True)]
"""A row id: a positive 64-bit integer (a JSON number, never a string)."""

Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=NAME_MAX_LENGTH),
    AfterValidator(_not_blank),
    AfterValidator(_storable),
]
Content = Annotated[
    str,
    StringConstraints(min_length=1, max_length=CONTENT_MAX_LENGTH),
    AfterValidator(_not_blank),
    AfterValidator(_storable),
]
SearchQuery = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_storable)]
