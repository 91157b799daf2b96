"""The journal: what recoveries did (runs, attempts, breaker changes), written off the caller's thread and read by the CLI and the dashboard."""
