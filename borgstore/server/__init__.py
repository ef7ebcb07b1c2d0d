"""The PyPI borgstore's server package path, kept so that ``borgstore.server.rest`` imports work.

The REST server lives in the ``borgstore-backend-rest`` distribution; see ``borgstore.server.rest``.
"""
