-- Migration 0004: the clerk's desk (review pages).

-- Leak (high-bill) credits a clerk granted. Billing records the money through its own `adjustments`
-- table; this one keeps what the District's policy needs: the read date the 12-month rule compares, the
-- proof of repair, and the step-by-step computation shown to the clerk (JSON).
CREATE TABLE leak_credits (
    credit_id       INTEGER PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts(account_id),
    read_id         INTEGER NOT NULL REFERENCES field_reads(read_id),
    cycle_id        TEXT NOT NULL REFERENCES cycles(cycle_id),
    read_on         TEXT NOT NULL,
    granted_at      TEXT NOT NULL,
    granted_by      TEXT NOT NULL,
    excess_hcf      TEXT NOT NULL,
    credit          TEXT NOT NULL,
    repair_proof    TEXT NOT NULL,
    computation     TEXT NOT NULL
) STRICT;
CREATE INDEX leak_credits_by_account ON leak_credits(account_id, read_on);

-- A completed re-read order whose result has been folded back into the read it was ordered for
-- (the result read supersedes the original). One row per order: folding is done once.
CREATE TABLE reread_results (
    order_id        INTEGER PRIMARY KEY REFERENCES field_orders(order_id),
    original_read_id INTEGER NOT NULL REFERENCES field_reads(read_id),
    result_read_id  INTEGER NOT NULL REFERENCES field_reads(read_id),
    applied_at      TEXT NOT NULL
) STRICT;
