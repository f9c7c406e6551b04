"""Level 4b: the real-time scoring service (scorer, audit log, FastAPI and Ray Serve apps)."""
