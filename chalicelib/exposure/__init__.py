"""A service's exposure: whether and how the public gateway serves it."""
