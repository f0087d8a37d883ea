"""The HTTP layer: routers per domain, one authorization dependency, one error handler."""
