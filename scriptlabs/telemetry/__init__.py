"""What the process tells its operator: metrics and logs. It imports nothing of the project."""
