-- Migration 0005: reserved; filled in by the change that needs it.
SELECT 1;
