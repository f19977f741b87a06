"""deep package."""
