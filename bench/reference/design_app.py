"""The design's data path, written out literally: the reference the service must beat by 5x.

FastAPI, an ORM session per request (via Depends), `session.add` + `commit` + `refresh`,
`pool_pre_ping=True`, pool 10/20, pydantic request and response models, and on
`POST /posts` a separate `session.get(User, ...)` to check that the user exists.

The design also says `echo=True`; that logs every statement and would make this app even
slower, so it is left off here to keep the comparison fair to the design.

Run it the way the service runs (uvicorn, uvloop + httptools, no access log, one process):
    DATABASE_URL=postgresql+asyncpg://... uvicorn design_app:app --app-dir bench/reference \
        --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, Text, func
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def _database_url() -> str:
    url = os.environ["DATABASE_URL"]
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


engine = create_async_engine(
    _database_url(),
    pool_pre_ping=True,
    pool_size=10,
    max_overflow=20,
    # echo=True in the design: excluded, it would only make this reference slower.
)
SessionLocal = async_sessionmaker(engine)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    created_time: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class Post(Base):
    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    created_time: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class UserCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    created_time: datetime


class PostCreate(BaseModel):
    user_id: int
    content: str = Field(min_length=1, max_length=100_000)


class PostOut(BaseModel):
    post_id: int
    content: str
    user_id: int
    created_time: datetime


async def get_session() -> AsyncIterator[AsyncSession]:
    async with SessionLocal() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

app = FastAPI(title="design reference")


@app.post("/users", status_code=201, response_model=UserOut)
async def create_user(body: UserCreate, session: SessionDep) -> User:
    user = User(name=body.name)
    session.add(user)
    await session.commit()
    await session.refresh(user)
    return user


@app.get("/user/{user_id}", response_model=UserOut)
async def get_user(user_id: int, session: SessionDep) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail="User not found")
    return user


@app.post("/posts", status_code=201, response_model=PostOut)
async def create_post(body: PostCreate, session: SessionDep) -> PostOut:
    user = await session.get(User, body.user_id)
    if user is None:
        raise HTTPException(status_code=404, detail="User not found")
    post = Post(user_id=body.user_id, content=body.content)
    session.add(post)
    await session.commit()
    await session.refresh(post)
    return PostOut(
        post_id=post.id,
        content=post.content,
        user_id=post.user_id,
        created_time=post.created_time,
    )
