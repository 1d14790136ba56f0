"""`wiki-service migrate-sqlite`: copy users and posts from the old service's SQLite app.db.

command.py runs it: its options, the fast or staged load, the read-back. pool.py starts the
reader processes (reader.py), which read and check the SQLite rows (source.py, user_ids.py) and
send them back as COPY binary tuples (copy_binary.py) in the messages of messages.py. load.py
puts the tuples into PostgreSQL; report.py shows the progress, writes the rows that cannot
land and prints the summary.
"""
