-- M+T: M plus the guide's usage tracking (a credit_transactions row in the same transaction).
-- Variables: naccounts, zipf (0|1).
\if :zipf
\set aid random_zipfian(1, :naccounts, 1.1)
\else
\set aid random(1, :naccounts)
\endif
select bench.consume_credits_tracked(lpad(to_hex(:aid::integer), 32, '0')::uuid, 1, 'chat');
