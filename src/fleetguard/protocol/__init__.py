"""Wire schemas shared by the device agent and the server (versioned); no server imports."""
