"""Shared state on one machine: breaker state, windows and leases, and retry budgets in the home database, with change detection for push."""
