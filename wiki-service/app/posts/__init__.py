"""Posts: what users write, searchable with PostgreSQL full-text search."""
