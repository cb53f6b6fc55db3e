"""harbor."""
