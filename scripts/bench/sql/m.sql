-- M: Makerkit's guide, consume_credits (SELECT ... FOR UPDATE, then UPDATE, no history).
-- Variables: naccounts, zipf (0|1).
\if :zipf
\set aid random_zipfian(1, :naccounts, 1.1)
\else
\set aid random(1, :naccounts)
\endif
select bench.consume_credits(lpad(to_hex(:aid::integer), 32, '0')::uuid, 1);
