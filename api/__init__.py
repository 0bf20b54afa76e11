"""The HTTP API: a thin layer over the `unlearn` library."""
