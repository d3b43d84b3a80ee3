"""The logic: plain functions that take values, return values or models, and raise APIError."""
