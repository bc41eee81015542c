"""The web UI: its static files under `/ui` and the conversations it keeps per principal."""
