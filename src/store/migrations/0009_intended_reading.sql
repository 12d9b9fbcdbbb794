-- What the reader likely meant (issue 15): when a keyed reading is far off and exactly one of the
-- usual slips (digits swapped, a digit keyed twice, a dial read one off...) lands inside the band,
-- validation names that reading; the clerk's read page offers it as a one-click correction. The
-- slip itself is told in the flag's explanation.
ALTER TABLE field_reads ADD COLUMN intended_reading INTEGER;
