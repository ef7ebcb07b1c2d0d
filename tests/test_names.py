"""Name validation against a plain reading of COMPAT.md's rules, over generated names."""

import string

import pytest
from hypothesis import given, settings, strategies as st

from borgstore._names import check_name, check_namespace


def valid_by_the_rules(name) -> bool:
    """COMPAT.md, "Names", written as plainly as possible."""
    if not isinstance(name, str) or not name or len(name) > 100:
        return False
    if not name.isascii() or name != name.lower() or "\\" in name:
        return False
    if any(c.isspace() or not c.isprintable() for c in name):
        return False
    if name.startswith("/") or name.endswith("/") or name.count("/") > 1 or ".." in name:
        return False
    if name.endswith((".tmp", ".del", ".hid")):
        return False
    parts = name.split("/")
    return all(part and part != "." for part in parts)


ALPHABET = string.ascii_letters + string.digits + "/.-_ \\~é\t" + "a" * 10


LONG_HEX = st.integers(min_value=90, max_value=101).map(lambda n: "data/" + "ab" * (n // 2) + "c" * (n % 2))


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=12) | st.text(max_size=8) | LONG_HEX)
def test_check_name_follows_the_rules(name):
    """check_name accepts exactly the names the COMPAT rules allow."""
    if valid_by_the_rules(name):
        check_name(name)
    else:
        with pytest.raises(ValueError):
            check_name(name)


@pytest.mark.parametrize("namespace, expected", [("data", "data"), ("data/", "data"), ("", ""), ("/", "")])
def test_check_namespace_accepts(namespace, expected):
    """Namespaces are given with or without a trailing '/'."""
    assert check_namespace(namespace) == expected


@pytest.mark.parametrize("namespace", ["Data", "a/b", "..", ".", "x.del", None, "a b"])
def test_check_namespace_rejects(namespace):
    """Invalid namespaces raise ValueError naming them."""
    with pytest.raises(ValueError, match="invalid namespace"):
        check_namespace(namespace)


def _slow_namespace_of(store, name):
    """What Store._namespace_of must answer, by the full rules: the check, then the lookup."""
    check_name(name)
    prefix, slash, _ = name.partition("/")
    if not slash:
        if name in store._namespaces:
            raise ValueError("a namespace's name")
        prefix = ""
    namespace = store._namespaces.get(prefix)
    if namespace is None:
        raise ValueError("no such namespace")
    return namespace


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(string.printable, max_size=12),
        st.builds(
            lambda ns, sep, key: ns + sep + key,
            st.sampled_from(["", "data", "config", "other", "Data", "/data"]),
            st.sampled_from(["/", "//", ""]),
            st.text(string.ascii_letters + string.digits + "./-_", max_size=110),
        ),
    )
)
def test_the_stores_fast_name_path_agrees_with_the_full_check(name):
    """The Store's shortcut for common names accepts exactly what the full check accepts."""
    from borgstore import Store

    store = Store("memory:", config={"": {"levels": [0]}, "data/": {"levels": [0]}, "config/": {"levels": [0]}})
    try:
        expected = _slow_namespace_of(store, name)
    except ValueError:
        with pytest.raises(ValueError):
            store._namespace_of(name)
    else:
        assert store._namespace_of(name) is expected
