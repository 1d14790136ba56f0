"""Users: who writes posts."""
