//! Integration tests: http_api.
