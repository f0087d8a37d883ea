"""The device agent: depends on fleetguard.core and fleetguard.protocol only."""
