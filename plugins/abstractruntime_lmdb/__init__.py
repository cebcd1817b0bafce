"""Builtin plugin ``lmdb``: the default store (URL ``lmdb:///path/to/dir``)."""
