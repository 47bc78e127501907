"""One module per group of endpoints; none imports another (shared views live in gateway/http/views.py)."""
