"""The Pareto gateway process. Importing this package must not import torch."""
