-- A hold: reserve 2 credits, then settle the actual 1 (two calls, two transactions, as an app
-- does around a model call). One pgbench transaction = one logical debit. Variables: naccounts.
\set aid random(1, :naccounts)
select hold_id from creditkit_reserve(lpad(to_hex(:aid::integer), 32, '0')::uuid, 2) \gset
select charged from creditkit_settle(:hold_id, 1);
