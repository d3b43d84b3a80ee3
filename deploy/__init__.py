"""Server configuration and the health check (released), and what fabfile.py's tasks do (not released): build.py
(the tarball), hosts.py (reaching and checking hosts), fleet.py (deploy and rollback across them),
fabric_steps.py (the steps on one host)."""
