"""The release version: the API document, /api/health and the deploy tarball's name read it."""

__version__ = "0.1.0"
