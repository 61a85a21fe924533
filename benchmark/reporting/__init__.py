"""Results and what is made of them: result files, reports, summaries, compare, gate, verify."""
