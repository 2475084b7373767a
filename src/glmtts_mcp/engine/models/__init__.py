"""The networks, each readable beside its upstream counterpart."""
