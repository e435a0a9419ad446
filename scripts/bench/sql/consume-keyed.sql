-- The kit as the SDK calls it: creditkit_consume of 1 credit with an event name, a fresh
-- idempotency key and a small metadata object. The key is the client id and a per-client counter
-- (pgbench keeps a client's variables across its transactions), so every call of a run has its
-- own key and debits: a repeated key would be a replay. The metadata is JSON text in a bind
-- parameter, as the SDK sends it, so every call parses it. Variables: naccounts, zipf (0|1), seq
-- (0 at the start), meta.
\if :zipf
\set aid random_zipfian(1, :naccounts, 1.1)
\else
\set aid random(1, :naccounts)
\endif
\set seq :seq + 1
select * from creditkit_consume(lpad(to_hex(:aid::integer), 32, '0')::uuid, 1, 'chat', 'k-' || :client_id || '-' || :seq, (:meta)::jsonb);
