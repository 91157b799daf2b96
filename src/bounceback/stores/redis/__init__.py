"""Shared state across a fleet: breaker state and budgets in Redis (a server, a Cluster or Sentinel), Lua scripts, and the pub/sub push of state changes."""
