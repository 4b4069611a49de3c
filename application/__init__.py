"""KeySync application layer."""
