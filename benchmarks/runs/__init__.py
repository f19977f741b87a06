"""Named benchmark runs."""
