"""All settings, read from the environment (the design's DB_* contract and more) when a
command or the app's lifespan starts, never at import."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal, NoReturn, get_args

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

ASYNC_DRIVER = "postgresql+asyncpg"

PositiveInt = Annotated[int, Field(ge=1)]
# libpq's values; asyncpg checks each new connection against the one chosen.
TargetSessionAttrs = Literal["any", "primary", "standby", "prefer-standby", "read-write", "read-only"]
MULTI_HOST_SESSION_ATTRS = "read-write"  # with several hosts, the primary is the one wanted
# libpq's host list, postgresql://user:pw@h1:p1,h2:p2/db, which SQLAlchemy's URL parser cannot
# read; its asyncpg dialect takes the same list as ?host=h1:p1&host=h2:p2.
_HOST_LIST_URL = re.compile(
    r"^(?P<head>[^:/?#]+://(?:[^@/]*@)?)(?P<hosts>[^/?#]*,[^/?#]*)(?P<tail>[/?#].*)?$", re.S
)


class ConfigError(ValueError):
    """A setting that cannot work; its message names the setting and quotes no secret."""


def _host_list(specs: Iterable[str], default_port: int) -> tuple[str, ...]:
    """["h1:p1", "h2"] -> ("h1:p1", "h2:5432"): every port given, as the dialect requires."""
    hosts = []
    for spec in specs:
        host, sep, port = spec.strip().partition(":")
        port_ok = not sep or (port.isdigit() and 0 < int(port) < 65536)
        if not host or "[" in host or not port_ok:
            raise ConfigError("each host must be HOST or HOST:PORT (an IPv6 address needs a DNS name here)")
        hosts.append(f"{host}:{port or default_port}")
    return tuple(hosts)


def _parse_database_url(text: str) -> URL:
    """make_url, which also reads libpq's host list (into the dialect's ?host= form)."""
    if match := _HOST_LIST_URL.match(text):
        url, hosts = make_url(match["head"] + (match["tail"] or "")), match["hosts"].split(",")
    else:
        url = make_url(text)
        hosts = url.query.get("host")
        hosts = hosts.split(",") if isinstance(hosts, str) and "," in hosts else hosts
        if not isinstance(hosts, (list, tuple)):
            return url
        if "port" in url.query:
            raise ConfigError("DATABASE_URL: give several hosts as HOST:PORT,HOST:PORT, not with port=")
    try:
        return url.set(query={**url.query, "host": _host_list(hosts, 5432)})
    except ConfigError as error:
        raise ConfigError(f"DATABASE_URL: {error}") from None


class Settings(BaseSettings):
    """Environment variables, with the design's defaults."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    db_user: str = "postgres"
    db_password: SecretStr = SecretStr("postgres")
    db_password_file: Path | None = None
    db_host: str = "localhost"  # or a list, H1:P1,H2:P2, tried in order (libpq's multi-host)
    db_port: int = Field(5432, ge=1, le=65535)
    db_name: str = "wikidb"
    database_url: SecretStr | None = None
    # Which server of the list to use; default read-write (the primary) when several are given.
    db_target_session_attrs: TargetSessionAttrs | None = None
    # false behind PgBouncer in transaction mode: only unnamed statements (see docs/reliability.md).
    db_prepared_statements: bool = True

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
    # order=relevance ranks this many of the newest matches: its bound on a search's work.
    search_rank_candidates: int = Field(1000, ge=1, le=10_000)
    # How often a process looks for full buckets of posts to write search bitmaps for; 0: never.
    search_seal_interval_seconds: float = Field(10.0, ge=0)

    log_level: str = Field("info", pattern="(?i)^(critical|error|warning|info|debug)$")
    max_body_bytes: PositiveInt = 1024 * 1024

    @field_validator("db_host")
    @classmethod
    def _hosts_well_formed(cls, value: str) -> str:
        _host_list(value.split(","), 5432)
        return value

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
        """user@host:port/database (or user@h1:p1,h2:p2/database): names the target in
        messages, never with the password."""
        url = self.url
        return f"{url.username}@{_hosts_text(url)}/{url.database}"

    @property
    def asyncpg_dsn(self) -> str:
        """The URL for asyncpg.connect, password included: never print it.

        In libpq's form, postgresql://user:pw@h1:p1,h2:p2/db: asyncpg reads only the last of
        several ?host= values."""
        url = self.url.set(drivername="postgresql")
        hosts = url.query.get("host")
        if not isinstance(hosts, tuple):
            return url.render_as_string(hide_password=False)
        rendered = url.set(query={k: v for k, v in url.query.items() if k != "host"}).render_as_string(
            hide_password=False
        )
        # Rendered with no host: "scheme://[user[:pw]@][/db][?query]"; an "@" in the user or
        # the password is %-escaped, so the first one ends the user info.
        scheme, _, rest = rendered.partition("://")
        userinfo = rest.partition("@")[0] + "@" if url.username is not None else ""
        return f"{scheme}://{userinfo}{','.join(hosts)}{rest[len(userinfo) :]}"

    @property
    def url(self) -> URL:
        """The SQLAlchemy URL; its str() hides the password."""
        if self.database_url is not None:
            url = _parse_database_url(self.database_url.get_secret_value())
            if url.get_backend_name() != "postgresql":
                raise ValueError("DATABASE_URL must be a postgresql:// URL")
            if self.db_password_file is not None:
                url = url.set(password=self.password)
            url = url.set(drivername=ASYNC_DRIVER)
        else:
            # URL.create escapes every character of the password (@ : / # % ' " and spaces).
            url = URL.create(
                ASYNC_DRIVER, username=self.db_user, password=self.password, database=self.db_name
            )
            hosts = _host_list(self.db_host.split(","), self.db_port)
            if len(hosts) == 1:
                host, _, port = hosts[0].partition(":")
                url = url.set(host=host, port=int(port))
            else:
                url = url.set(query={"host": hosts})
        return self._with_session_attrs(url)

    def _with_session_attrs(self, url: URL) -> URL:
        # target_session_attrs in DATABASE_URL wins, as in libpq, over the variable.
        attrs = url.query.get("target_session_attrs") or self.db_target_session_attrs
        if attrs is None and isinstance(url.query.get("host"), tuple):
            attrs = MULTI_HOST_SESSION_ATTRS
        if attrs is None:
            return url
        if attrs not in get_args(TargetSessionAttrs):
            choices = ", ".join(get_args(TargetSessionAttrs))
            raise ConfigError(f"DATABASE_URL: target_session_attrs must be one of {choices}")
        return url.update_query_dict({"target_session_attrs": attrs})


def _hosts_text(url: URL) -> str:
    hosts = url.query.get("host")
    return ",".join(hosts) if isinstance(hosts, tuple) else f"{url.host}:{url.port or 5432}"


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    name = "_".join(str(part) for part in first["loc"]).upper() or "settings"
    return f"invalid configuration: {name}: {first['msg']}"


def get_settings() -> Settings:
    """Settings from the environment as it is now; a bad value exits with one line naming
    the variable."""
    try:
        settings = Settings()
        _ = settings.url  # validates DATABASE_URL and reads the password file now
    except ValidationError as error:
        raise SystemExit(_one_line(error)) from None
    except ConfigError as error:
        raise SystemExit(f"invalid configuration: {error}") from None
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


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line to stderr and exit: the CLI's way to refuse."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)
