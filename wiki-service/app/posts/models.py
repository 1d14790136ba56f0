"""The posts table and its search index."""

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.database import Base, length_check

CONTENT_MAX_LENGTH = 100_000
# 'simple' does no stemming: right for a wiki written in many languages.
SEARCH_CONFIG = "simple"


class Post(Base):
    """A piece of content written by one user."""

    __tablename__ = "posts"
    __table_args__ = (
        CheckConstraint(length_check("content", CONTENT_MAX_LENGTH), name="posts_content_length"),
        # GET /users/{id}/posts and GET /posts?user_id= page through one user's posts by id.
        Index("posts_user_id_id_idx", "user_id", "id"),
        Index(
            "posts_content_search_idx",
            text(f"to_tsvector('{SEARCH_CONFIG}', content)"),
            postgresql_using="gin",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", name="posts_user_id_fkey"), nullable=False
    )
    content: Mapped[str] = mapped_column(Text, nullable=False)
    created_time: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
