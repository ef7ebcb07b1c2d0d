"""Every shipped middleware set up so that it must be invisible to the contract, for running the
kit on a backend with each middleware around it."""

TRANSPARENT_MIDDLEWARE = {
    "stats": {},
    "softdelete": {},
    "emulate": {"latency": 0, "bandwidth": 0},
    "permissions": {"permissions": {"": "lrwWD"}},
    "quota": {"limit": 10**15},
}


def store_chain_with(name: str, options: dict) -> list:
    """A Store's middleware list with *name* between ``stats`` (outermost) and ``softdelete``
    (innermost), where the default chain puts its optional links."""
    if name in ("stats", "softdelete"):
        return ["stats", "softdelete"]
    return ["stats", (name, options), "softdelete"]
