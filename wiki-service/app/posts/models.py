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
from sqlalchemy.dialects.postgresql import BIT, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from app.limits import CONTENT_MAX_LENGTH
from app.models_base import Base, length_check

# 'simple' does no stemming: right for a wiki written in many languages.
SEARCH_CONFIG = "simple"
# posts_search_idx files each post under id >> SEARCH_BUCKET_BITS too, so that a search can
# ask for the matches among 16,384 ids at a time, newest first (app/posts/search.py).
SEARCH_BUCKET_BITS = 14


class Post(Base):
    """A piece of content written by one user."""

    __tablename__ = "posts"
    __table_args__ = (
        CheckConstraint(length_check("content", CONTENT_MAX_LENGTH), name="posts_content_length"),
        # GET /users/{id}/posts and GET /posts?user_id= page through one user's posts by id.
        Index("posts_user_id_id_idx", "user_id", "id"),
        Index(
            "posts_search_idx",
            text(f"(id >> {SEARCH_BUCKET_BITS})"),
            "search",
            postgresql_using="gin",
            postgresql_with={"fastupdate": "off"},
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
    # to_tsvector(SEARCH_CONFIG, content), set by the trigger posts_search_fill (migration 0003);
    # NULL only between a bulk load and `db build-indexes`.
    search: Mapped[str | None] = mapped_column(TSVECTOR, nullable=True)


class SearchBitmap(Base):
    """Which posts of one bucket of ids hold a lexeme common there: bit i is post
    (bucket << SEARCH_BUCKET_BITS) + i (app/posts/bitmaps.py)."""

    __tablename__ = "search_bitmaps"

    lexeme: Mapped[str] = mapped_column(Text, primary_key=True)
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    posts: Mapped[str] = mapped_column(BIT(varying=True), nullable=False)


class SealedBucket(Base):
    """A bucket of ids whose search_bitmaps rows are written."""

    __tablename__ = "search_bitmap_buckets"

    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    sealed_time: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class StaleBucket(Base):
    """A sealed bucket whose posts changed since: its bitmaps are not used until resealed."""

    __tablename__ = "search_bitmap_stale"
    __table_args__ = (Index("search_bitmap_stale_bucket_idx", "bucket"),)
    __mapper_args__ = {"primary_key": ["bucket"]}  # a log of marks, no key of its own

    bucket: Mapped[int] = mapped_column(BigInteger, nullable=False)
