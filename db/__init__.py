"""The stores: settings, the SQL database (the truth about jobs and the library) and
the live Redis keys (progress stream, heartbeats) that can always be rebuilt."""
