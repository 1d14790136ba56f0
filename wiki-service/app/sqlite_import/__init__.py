"""`wiki-service migrate-sqlite`: copy users and posts from the old service's SQLite app.db.

source.py reads and checks the SQLite rows (in reader processes) and turns every row that
PostgreSQL can store exactly as it is into one tuple of COPY binary format; report.py writes
the rows that cannot land; load.py puts the tuples into PostgreSQL; command.py ties them
together.
"""
