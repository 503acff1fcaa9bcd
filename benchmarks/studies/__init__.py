"""One-off studies: each answered a question once (its answer and the commit that made it are in docs/ and
benchmarks/results/); kept to rerun, not used by the workflow or the tests."""
