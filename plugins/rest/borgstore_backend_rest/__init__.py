"""borgstore's REST client and server: ``http:``, ``https:`` and ``rest:`` URLs, and
``borgstore-server-rest``, which serves any borgstore backend over HTTP (TCP, TLS, a systemd
socket or stdio, e.g. through ssh) and enforces permissions and a quota on the server, where a
client that cannot be trusted cannot get around them.

The wire protocol is the PyPI borgstore 0.7's (see ``_wire``): a client or server of either
project works with one of the other.  See docs/rest.md.

This module is imported whenever borgstore looks for plugins, so it stays light: the client
(``._backend``) is imported only when one of its URLs is used, the server only when it runs.
"""

__version__ = "1.0.0.dev0"
