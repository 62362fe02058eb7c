"""Population shift: cohort performance, drift beside cohort mix, rolling backtests and champion monitoring."""
