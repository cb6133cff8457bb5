"""descend.data."""
