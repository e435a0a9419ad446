-- Batched consume, measured as :batch looped single creditkit_consume calls for one account in one
-- call (one transaction); there is no batch API yet. Variables: naccounts, batch.
\set aid random(1, :naccounts)
select bench.consume_looped(lpad(to_hex(:aid::integer), 32, '0')::uuid, :batch);
