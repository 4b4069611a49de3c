"""KeySync domain layer."""
