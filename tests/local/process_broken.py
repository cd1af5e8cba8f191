"""A module that cannot be imported, for the ``process=`` import-error tests."""

raise RuntimeError("this module is broken on purpose")
