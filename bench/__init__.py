"""nanokube's benchmarks: printed figures against targets, never asserts (see `__main__`)."""
