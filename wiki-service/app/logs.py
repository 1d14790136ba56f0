"""JSON log lines on stdout, one per event, with no secret in them."""

from __future__ import annotations

import logging
import logging.config
import os
import time
from typing import Any

import orjson

# LogRecord's own attributes; anything else on a record came from `extra=` and is logged.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's copy of the message with ANSI colours
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's extra fields."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        # Defence in depth: a secret that slipped into a message is masked before it is written,
        # as it is and as JSON escapes it.
        masked = {s for s in secrets if len(s) >= 4}
        masked |= {orjson.dumps(s).decode()[1:-1] for s in masked}
        self._secrets = tuple(masked)
        self._second, self._second_text = -1, ""  # the access log writes many lines a second
        # The lines carry no source location, thread or process name: spare every record
        # (one per request) the stack walk and lookups that would fill them in (the logging
        # HOWTO's "Optimization" section). Set here because each worker process builds its
        # formatter from the config.
        logging._srcfile = None
        logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        entry: dict[str, Any] = {
            "time": f"{self._second_text}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": os.getpid(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        line = orjson.dumps(entry, default=repr).decode()
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, "***")
        return line


def logging_config(
    level: str = "info", *, sql_echo: bool = False, secrets: tuple[str, ...] = ()
) -> dict[str, Any]:
    """dictConfig for the app and for uvicorn: everything as JSON on stdout."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "secrets": secrets}},
        "handlers": {
            "stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
        },
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": ["stdout"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            # The app writes its own access line (with route and request id).
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "app.sql": {"level": "INFO" if sql_echo else "WARNING"},
            "sqlalchemy.engine": {"level": "INFO" if sql_echo else "WARNING"},
            "alembic": {"level": "INFO"},
        },
    }


def configure(level: str = "info", *, sql_echo: bool = False, secrets: tuple[str, ...] = ()) -> None:
    """Install the JSON logging config in this process."""
    logging.config.dictConfig(logging_config(level, sql_echo=sql_echo, secrets=secrets))
