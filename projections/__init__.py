"""KeySync projections layer."""
