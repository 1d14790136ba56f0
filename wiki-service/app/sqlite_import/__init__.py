"""`wiki-service migrate-sqlite`: copy users and posts from the old service's SQLite app.db.

source.py reads and checks the SQLite rows (in a separate process) and turns every row that
PostgreSQL can store exactly as it is into one line of COPY text; report.py writes the rows
that cannot land; load.py puts the lines into PostgreSQL; command.py ties them together.
"""
