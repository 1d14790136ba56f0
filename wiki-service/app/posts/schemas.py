"""Request and response bodies of the posts API."""

from datetime import datetime

from pydantic import BaseModel

from app.validation import Content, Id


class PostCreate(BaseModel):
    """POST /posts."""

    user_id: Id
    content: Content


class PostOut(BaseModel):
    """A post, as every endpoint returns it."""

    post_id: int
    content: str
    user_id: int
    created_time: datetime
