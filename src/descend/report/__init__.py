"""descend.report."""
