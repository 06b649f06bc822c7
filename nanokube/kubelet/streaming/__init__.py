"""The node agent's streaming server: logs, exec, attach and port-forward.

`server` serves the kubelet's streaming paths to the API server and calls a
`StreamingBackend` (implemented by the kubelet over its runtime); `websocket`,
`spdy` and `portforward` are the wire protocols; `logs` reads CRI log files.
"""
