"""The object model: plain JSON dicts, the resource registry and pure functions over them."""
