-- R+L for a batch: one UPDATE of the account by the batch's total plus one INSERT of :batch ledger
-- rows (bench.debit_with_ledger_batch), the floor for any batch that writes a ledger row per
-- event. Variables: naccounts, batch.
\set aid random(1, :naccounts)
select bench.debit_with_ledger_batch(lpad(to_hex(:aid::integer), 32, '0')::uuid, 1, :batch);
