-- N: the naive SELECT ... FOR UPDATE, then UPDATE, no ledger. Variables: naccounts, zipf (0|1).
\if :zipf
\set aid random_zipfian(1, :naccounts, 1.1)
\else
\set aid random(1, :naccounts)
\endif
select bench.naive_debit(lpad(to_hex(:aid::integer), 32, '0')::uuid, 1);
