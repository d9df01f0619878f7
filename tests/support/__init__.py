"""What the test suites share: the services' addresses, their per-test setup, and hostile input builders.

The stack itself (an API and its workers as real processes) is `synthjobs.devtools.stack`, so `bench/` and the
demo start it the same way; the fixtures in `tests/conftest.py` are thin wrappers over these modules.
"""
