"""Tendril's services: one package per service over a small common core (tendril.core)."""
