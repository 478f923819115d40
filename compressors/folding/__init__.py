"""Techniques that fold layers into their neighbours."""
