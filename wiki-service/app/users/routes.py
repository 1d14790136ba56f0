"""HTTP routes of the users API: translate HTTP to service calls and back, nothing more."""

from typing import Annotated

from fastapi import APIRouter, Path

from app.deps import DatabaseDep
from app.errors import error_responses
from app.fastlane import fast_lane
from app.limits import BIGINT_MAX
from app.pagination import DEFAULT_LIMIT, Cursor, Limit, Page, decode_cursor, page
from app.responses import JSON
from app.users import service
from app.users.schemas import UserCreate, UserOut

router = APIRouter(tags=["users"])

UserId = Annotated[int, Path(alias="id", ge=1, le=BIGINT_MAX, description="A user id (64-bit, positive).")]


@router.post("/users", status_code=201, response_model=UserOut, responses=error_responses(400, 413, 422))
@fast_lane
async def create_user(db: DatabaseDep, body: UserCreate) -> JSON:
    """Create a user."""
    return JSON(await service.create(db=db, name=body.name), status_code=201)


@router.get("/users", response_model=Page[UserOut], responses=error_responses(400, 422))
async def list_users(db: DatabaseDep, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> JSON:
    """Users, newest first, a page at a time."""
    users = await service.list_page(db=db, before_id=decode_cursor(cursor), limit=limit + 1)
    return JSON(page(users, limit, key="id"))


@router.get("/users/{id}", response_model=UserOut, responses=error_responses(404, 422))
@fast_lane
async def read_user(db: DatabaseDep, user_id: UserId) -> JSON:
    """One user."""
    return JSON(await service.get(db=db, user_id=user_id))


# The path of the service this one replaces; its clients keep working.
router.add_api_route(
    "/user/{id}",
    read_user,
    methods=["GET"],
    response_model=UserOut,
    responses=error_responses(404, 422),
    summary="Read User (legacy path)",
    operation_id="read_user_legacy",
)
