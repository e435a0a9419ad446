-- The kit: one creditkit_consume of 1 credit. Variables: naccounts, zipf (0|1).
\if :zipf
\set aid random_zipfian(1, :naccounts, 1.1)
\else
\set aid random(1, :naccounts)
\endif
select * from creditkit_consume(lpad(to_hex(:aid::integer), 32, '0')::uuid, 1);
