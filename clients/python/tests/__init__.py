"""Tests of the client library against the real stack (a package, so that its conftest
does not shadow the end-to-end tests' `conftest` module when both run in one pytest)."""
