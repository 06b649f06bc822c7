"""nanokube: a Kubernetes-compatible container orchestrator in Python."""

__version__ = "0.1.0"
KUBERNETES_VERSION = "v1.33.1"
