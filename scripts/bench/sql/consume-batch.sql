-- Batched consume: one creditkit_consume_batch call of :batch usage events of 1 credit for one
-- account, as an app that buffers a user's metered events flushes them. Variables: naccounts, batch.
\set aid random(1, :naccounts)
select count(*) from creditkit_consume_batch(
  (select jsonb_agg(jsonb_build_object('account_id', lpad(to_hex(:aid::integer), 32, '0')::uuid, 'amount', 1))
     from generate_series(1, :batch)));
