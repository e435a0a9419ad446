-- The mix's reset: the account's plan allowance is reset (bench.reset_plan). Variables: naccounts.
\set aid random(1, :naccounts)
select bench.reset_plan(lpad(to_hex(:aid::integer), 32, '0')::uuid);
