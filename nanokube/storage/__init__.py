"""Revisioned key-value stores with etcd semantics (see `store.py`)."""
