"""Constants that are part of the public API and of the on-disk layout."""

ROOTNS = ""  # the root namespace: names without a "namespace/" part live here
DEL_SUFFIX = ".del"  # a soft-deleted item: the same object, renamed with this suffix
TMP_SUFFIX = ".tmp"  # an item being written; never listed, renamed into place when complete
HID_SUFFIX = ".hid"  # internal items (e.g. the quota file), never listed
MAX_NAME_LENGTH = 100  # the longest valid name, namespace included
QUOTA_STORE_NAME = "quota" + HID_SUFFIX  # the quota usage file in the store root (as the PyPI posixfs)
QUOTA_PERSIST_DELTA = 10 * 1000 * 1000  # write the usage back after this many bytes of change ...
QUOTA_PERSIST_INTERVAL = 300  # ... or after this many seconds
