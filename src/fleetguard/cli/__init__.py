"""The command layer: parse, call a service, print."""
