"""Helpers the tests share; the conftest.py files hold fixtures only.

- cli.py: the service's environment, `wiki-service ARGS` and `python -c` as subprocesses
- server.py: `Server` and `Servers`, the one way to start the service as a process
- db.py: the suite's databases, statements as the superuser, private_server() for a test's own PostgreSQL
- api.py: requests and answers shared by the API tests
- sqlite_source.py: old SQLite `app.db` files for `migrate-sqlite`
"""
