-- R+L: the UPDATE plus a ledger INSERT in one plpgsql function. Variables: naccounts, zipf (0|1).
\if :zipf
\set aid random_zipfian(1, :naccounts, 1.1)
\else
\set aid random(1, :naccounts)
\endif
select bench.debit_with_ledger(lpad(to_hex(:aid::integer), 32, '0')::uuid, 1);
