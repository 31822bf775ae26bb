"""Aggregates of the register, one module each, with their events and rules."""
