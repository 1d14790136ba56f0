"""wiki-service: a small Wikipedia-like API (users and their posts) on PostgreSQL."""

__version__ = "0.1.0"
