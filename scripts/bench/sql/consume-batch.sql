-- Batched consume: one creditkit_consume_batch call of n usage events (the length of :events)
-- of 1 credit for one account, as an app that buffers a user's metered events flushes them. The
-- events arrive as an app sends them: JSON text in a bind parameter, cast to jsonb by the
-- statement. :events is that text with the account id written AID (the bench builds it); each
-- call fills in its account. Variables: naccounts, events.
\set aid random(1, :naccounts)
select count(*) from creditkit_consume_batch(
  replace(:events, 'AID', lpad(to_hex(:aid::integer), 32, '0')::uuid::text)::jsonb);
