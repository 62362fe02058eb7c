"""The evaluation report: plots and an HTML page written next to each model in the registry."""
