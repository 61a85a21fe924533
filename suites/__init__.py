"""Built-in suites: one module per suite, each a pure function of predictions + manifest."""
