"""descend.tune."""
