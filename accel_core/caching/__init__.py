"""Feature caching and forecasting: when to compute (schedules, gates) apart from how to approximate."""
