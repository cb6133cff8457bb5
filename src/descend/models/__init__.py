"""descend.models."""
