"""The users table."""

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Identity, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from app.limits import NAME_MAX_LENGTH
from app.models_base import Base, length_check


class User(Base):
    """A person who writes posts."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(length_check("name", NAME_MAX_LENGTH), name="users_name_length"),)

    # BY DEFAULT (not ALWAYS) so that migrate-sqlite can keep the old ids.
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    created_time: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
