"""Running models: plans, forward passes, the prediction store, shards, Ray and merges."""
