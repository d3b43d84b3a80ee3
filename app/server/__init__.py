"""The Tornado server that ``tornado_server.py`` runs: the WSGI adapter, options, start-up, forking.

Nothing in the app imports this package: the app is a WSGI application and does not need its server.
"""
