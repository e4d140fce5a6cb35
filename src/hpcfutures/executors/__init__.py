"""Executors: thin facades that validate input, merge defaults and pick an engine."""
