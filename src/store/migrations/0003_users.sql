-- Migration 0003: reserved; filled in by the change that needs it.
SELECT 1;
