-- R+L+K: R+L with a fresh idempotency key per debit in the ledger's unique (account, key) index.
-- The key is built as consume-keyed.sql builds the kit's (client id and a per-client counter, so
-- no two calls of a run share one). Variables: naccounts, zipf (0|1), seq (0 at the start).
\if :zipf
\set aid random_zipfian(1, :naccounts, 1.1)
\else
\set aid random(1, :naccounts)
\endif
\set seq :seq + 1
select bench.debit_with_ledger_keyed(lpad(to_hex(:aid::integer), 32, '0')::uuid, 1, 'k-' || :client_id || '-' || :seq);
