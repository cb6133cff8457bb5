"""descend.inspect."""
