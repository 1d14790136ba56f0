"""Users and posts, with the indexes every list and search query uses.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("created_time", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("char_length(name) BETWEEN 1 AND 200", name="users_name_length"),
    )
    op.create_table(
        "posts",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column(
            "user_id",
            sa.BigInteger,
            sa.ForeignKey("users.id", name="posts_user_id_fkey"),
            nullable=False,
        ),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("created_time", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("char_length(content) BETWEEN 1 AND 100000", name="posts_content_length"),
    )
    op.create_index("posts_user_id_id_idx", "posts", ["user_id", "id"])
    op.create_index(
        "posts_content_search_idx",
        "posts",
        [sa.text("to_tsvector('simple', content)")],
        postgresql_using="gin",
    )


def downgrade() -> None:
    op.drop_table("posts")
    op.drop_table("users")
