"""HTTP routes of the posts API: translate HTTP to service calls and back, nothing more."""

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.exceptions import RequestValidationError

from app.deps import DatabaseDep, SearchGateDep
from app.errors import error_responses
from app.fastlane import fast_lane
from app.limits import BIGINT_MAX
from app.pagination import (
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    Page,
    decode_cursor,
    decode_ranked_cursor,
    page,
    ranked_page,
)
from app.posts import service
from app.posts.schemas import PostCreate, PostOut
from app.responses import JSON
from app.users.routes import UserId
from app.validation import SearchQuery

router = APIRouter(tags=["posts"])

PostId = Annotated[int, Path(alias="id", ge=1, le=BIGINT_MAX, description="A post id (64-bit, positive).")]


@router.post("/posts", status_code=201, response_model=PostOut, responses=error_responses(400, 404, 413, 422))
@fast_lane
async def create_post(db: DatabaseDep, body: PostCreate) -> JSON:
    """Create a post for an existing user."""
    post = await service.create(db=db, user_id=body.user_id, content=body.content)
    return JSON(post, status_code=201)


@router.get("/posts", response_model=Page[PostOut], responses=error_responses(400, 422))
async def list_posts(
    db: DatabaseDep,
    search_gate: SearchGateDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    user_id: Annotated[int | None, Query(ge=1, le=BIGINT_MAX, description="Only this user's posts.")] = None,
    q: Annotated[
        SearchQuery | None, Query(description='Full-text search: words, "a phrase", or, -word.')
    ] = None,
    order: Annotated[
        Literal["newest", "relevance"],
        Query(
            description="`relevance` (needs q): the newest SEARCH_RANK_CANDIDATES (1,000) matches, "
            "most relevant first."
        ),
    ] = "newest",
) -> JSON:
    """Posts, newest first, optionally one user's or those matching a full-text search."""
    if order == "relevance":
        if q is None:
            raise RequestValidationError(
                [
                    {
                        "loc": ("query", "order"),
                        "type": "missing",
                        "msg": "order=relevance needs a search query q",
                    }
                ]
            )
        below, after = BIGINT_MAX, None
        if cursor is not None:
            below, rank, last_id = decode_ranked_cursor(cursor)
            after = (rank, last_id)
        below, ranked = await service.search_by_relevance(
            db=db,
            search_gate=search_gate,
            query=q,
            below=below,
            after=after,
            limit=limit + 1,
            user_id=user_id,
        )
        return JSON(ranked_page(ranked, limit, below=below))
    posts = await service.list_page(
        db=db,
        before_id=decode_cursor(cursor),
        limit=limit + 1,
        user_id=user_id,
        query=q,
        search_gate=search_gate,
    )
    return JSON(page(posts, limit, key="post_id"))


@router.get("/posts/{id}", response_model=PostOut, responses=error_responses(404, 422))
async def read_post(db: DatabaseDep, post_id: PostId) -> JSON:
    """One post."""
    return JSON(await service.get(db=db, post_id=post_id))


@router.get("/users/{id}/posts", response_model=Page[PostOut], responses=error_responses(400, 404, 422))
async def list_user_posts(
    db: DatabaseDep, user_id: UserId, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> JSON:
    """One user's posts, newest first."""
    posts = await service.list_for_user(
        db=db, user_id=user_id, before_id=decode_cursor(cursor), limit=limit + 1
    )
    return JSON(page(posts, limit, key="post_id"))
