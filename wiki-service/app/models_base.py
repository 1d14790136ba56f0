"""The declarative base of the models (Alembic's target metadata); imports nothing of the app."""

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base of the models; Alembic's target metadata."""


def length_check(column: str, limit: int) -> str:
    """SQL true when the text has 1..limit characters; counts them only past `limit` bytes."""
    return f"{column} <> '' AND (octet_length({column}) <= {limit} OR char_length({column}) <= {limit})"
