"""Regression tests named after attacks on the platform itself (docs/security.md)."""
