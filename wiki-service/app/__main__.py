"""The `wiki-service` command (and `python -m app`): imports the CLI only when called.

migrate-sqlite's reader processes are spawned, and spawn re-imports the main script in every
child: through this module they start without pydantic and SQLAlchemy (0.7 CPU-s each).
"""


def main() -> None:
    from app.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
