"""Deployments: A/B serving of a model's variants behind one endpoint (see manager.py)."""
