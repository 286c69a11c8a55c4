"""Models and their activation fingerprints: loading, hooks, pooling, packing, the cache."""
