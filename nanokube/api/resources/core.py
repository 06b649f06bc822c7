"""Placeholder: declarations arrive with the resources work."""

from nanokube.api.kinds import Kind

KINDS: tuple[Kind, ...] = ()
