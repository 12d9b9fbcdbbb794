//! Integration tests: cycles.
