//! Validation, estimation and editing (VEE): expected use, hi/lo limits and the read rules. Pure.
