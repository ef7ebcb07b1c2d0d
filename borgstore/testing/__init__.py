"""The conformance kit: proves that a backend or a middleware keeps the store contract."""
