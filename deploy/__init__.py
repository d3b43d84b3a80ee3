"""Server configuration, the health check, and fabfile.py's steps (fabric_steps.py, not released)."""
