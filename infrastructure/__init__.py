"""KeySync infrastructure layer."""
