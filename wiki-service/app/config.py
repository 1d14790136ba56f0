"""All settings, read once from the environment (the design's DB_* contract and more)."""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

ASYNC_DRIVER = "postgresql+asyncpg"

PositiveInt = Annotated[int, Field(ge=1)]


class Settings(BaseSettings):
    """Environment variables, with the design's defaults."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    db_user: str = "postgres"
    db_password: SecretStr = SecretStr("postgres")
    db_password_file: Path | None = None
    db_host: str = "localhost"
    db_port: int = Field(5432, ge=1, le=65535)
    db_name: str = "wikidb"
    database_url: SecretStr | None = None

    db_pool_size: PositiveInt = 10
    db_max_overflow: int = Field(20, ge=0)
    db_pool_timeout: float = Field(5.0, gt=0, le=300)
    db_pool_pre_ping: bool = True
    # A pooled connection idle for less than this is trusted without a round trip (see database.py).
    db_ping_idle_seconds: float = Field(2.0, ge=0)
    db_pool_recycle: int = Field(1800, ge=-1)
    db_statement_timeout_ms: int = Field(30000, ge=0)
    db_echo: bool = False

    # Bulkheads: searches at once per process, how long one waits for its turn, its own timeout.
    search_max_concurrency: PositiveInt = 1
    search_queue_seconds: float = Field(0.1, ge=0, le=60)
    search_statement_timeout_ms: int = Field(2000, ge=1)

    log_level: str = Field("info", pattern="(?i)^(critical|error|warning|info|debug)$")
    max_body_bytes: PositiveInt = 1024 * 1024

    @field_validator("db_password_file")
    @classmethod
    def _password_file_readable(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"no readable file at {path}")
        return path

    @property
    def password(self) -> str:
        """The password: DB_PASSWORD_FILE (a mounted Secret) wins over DB_PASSWORD."""
        if self.db_password_file is not None:
            # A Secret mounted as a file usually ends with one newline; spaces are significant.
            return self.db_password_file.read_text().rstrip("\r\n")
        return self.db_password.get_secret_value()

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never be written out (the design's public default is not one)."""
        password = self.url.password
        return (password,) if password and password != "postgres" else ()

    @property
    def where(self) -> str:
        """user@host:port/database: names the target in messages, never with the password."""
        url = self.url
        return f"{url.username}@{url.host}:{url.port or 5432}/{url.database}"

    @property
    def asyncpg_dsn(self) -> str:
        """The URL for asyncpg.connect, password included: never print it."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    @property
    def url(self) -> URL:
        """The SQLAlchemy URL; its str() hides the password."""
        if self.database_url is not None:
            url = make_url(self.database_url.get_secret_value())
            if url.get_backend_name() != "postgresql":
                raise ValueError("DATABASE_URL must be a postgresql:// URL")
            if self.db_password_file is not None:
                url = url.set(password=self.password)
            return url.set(drivername=ASYNC_DRIVER)
        # URL.create escapes every character of the password (@ : / # % ' " and spaces).
        return URL.create(
            ASYNC_DRIVER,
            username=self.db_user,
            password=self.password,
            host=self.db_host,
            port=self.db_port,
            database=self.db_name,
        )


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    name = "_".join(str(part) for part in first["loc"]).upper() or "settings"
    return f"invalid configuration: {name}: {first['msg']}"


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment; a bad value exits with one line naming the variable."""
    try:
        settings = Settings()
        settings.url  # noqa: B018 - validates DATABASE_URL and reads the password file now
    except ValidationError as error:
        raise SystemExit(_one_line(error)) from None
    except (ArgumentError, ValueError):
        # The parser's message can quote part of the URL, and so of the password.
        raise SystemExit("invalid configuration: DATABASE_URL: not a valid postgresql:// URL") from None
    except OSError as error:
        raise SystemExit(f"invalid configuration: DB_PASSWORD_FILE: {error.strerror}") from None
    return settings


def describe(error: BaseException) -> str:
    """A one-line reason for a failure (its cause, when it wraps one), without any secret."""
    cause = error.__cause__ or error
    text = str(cause).splitlines()[0] if str(cause) else ""
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


def fail(message: str, code: int = 1) -> None:
    """Print one line to stderr and exit: the CLI's way to refuse."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)
