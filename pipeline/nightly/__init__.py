"""Nightly regression suites: ``suite`` (definition and runner), ``history`` (records and the
drift judge) and ``page`` (the history as an HTML page)."""
