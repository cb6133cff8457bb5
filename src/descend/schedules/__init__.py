"""descend.schedules."""
