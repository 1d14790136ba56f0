"""Request and response bodies of the users API."""

from datetime import datetime

from pydantic import BaseModel

from app.validation import Name


class UserCreate(BaseModel):
    """POST /users."""

    name: Name


class UserOut(BaseModel):
    """A user, as every endpoint returns it."""

    id: int
    name: str
    created_time: datetime
