"""The JSON response class: orjson renders datetimes as ISO 8601 with their zone."""

from typing import Any

import orjson
from starlette.responses import Response


class JSON(Response):
    """application/json rendered by orjson (datetimes ISO 8601, UTC offset shown)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
