-- R: the raw single-row UPDATE (guarded so it cannot overdraw). Variables: naccounts, zipf (0|1).
\if :zipf
\set aid random_zipfian(1, :naccounts, 1.1)
\else
\set aid random(1, :naccounts)
\endif
update bench.accounts set balance = balance - 1 where id = lpad(to_hex(:aid::integer), 32, '0')::uuid and balance >= 1;
