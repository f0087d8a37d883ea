"""The HTTP layer: routers per domain, their schemas, one authorization dependency, one
error handler, the middleware, and the device endpoint. The operator app is assembled by
``fleetguard.server.operator_app``; what routers ask of the running process is typed in
``orchestration`` and found in the ``context``."""
