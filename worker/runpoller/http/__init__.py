"""HTTP to the API: one request in, JSON or a classified failure out; the shared client."""
