"""Presence: which users hold a live connection on some device."""
