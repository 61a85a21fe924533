"""The harness's foundations: the registry, labels, errors, hashing and the suite contract."""
