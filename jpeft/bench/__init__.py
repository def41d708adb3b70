"""Speed benchmarks that print numbers (never timed unit tests)."""
