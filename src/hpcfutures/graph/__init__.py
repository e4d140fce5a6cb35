"""Graph-only mode: record the submitted calls instead of running them, then draw them
(``draw``) or export them as a Python Workflow Definition (``workflow_json``)."""
