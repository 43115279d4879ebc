"""Live updates: the event log is the truth, the channel layer only rings the bell."""
