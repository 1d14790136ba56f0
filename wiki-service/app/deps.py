"""What routes get from the app's state through FastAPI dependencies (built in the lifespan)."""

from typing import Annotated

from fastapi import Depends, Request

from app.database import Database
from app.posts.search import SearchGate


def get_database(request: Request) -> Database:
    """The app's Database (app.state.db)."""
    db: Database = request.app.state.db
    return db


def get_search_gate(request: Request) -> SearchGate:
    """The app's search bulkhead (app.state.search_gate)."""
    gate: SearchGate = request.app.state.search_gate
    return gate


DatabaseDep = Annotated[Database, Depends(get_database)]
SearchGateDep = Annotated[SearchGate, Depends(get_search_gate)]
