"""CLI command (filled in by its issue)."""
