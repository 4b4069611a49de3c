"""KeySync cli layer."""
