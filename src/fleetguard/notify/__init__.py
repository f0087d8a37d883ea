"""Notifications: events delivered to signed webhooks and syslog (RFC 5424, CEF payload).

A domain beside telemetry and findings: it knows nothing of what an event means, only how to
deliver it durably (an outbox in the database, retried with backoff, never blocking the
caller) and how to sign or format it for each kind of destination.
"""
