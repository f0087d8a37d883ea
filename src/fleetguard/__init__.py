"""fleetguard: harden and watch a fleet of connected devices."""

__version__ = "0.1.0"
