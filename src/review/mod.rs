//! The clerk's desk: web pages for flagged reads, message codes, field orders, leak adjustments, reports.
