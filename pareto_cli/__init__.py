"""The `pareto` command line."""
