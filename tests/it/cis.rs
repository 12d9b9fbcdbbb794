//! Integration tests: cis.
