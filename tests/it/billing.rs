//! Integration tests: billing.
