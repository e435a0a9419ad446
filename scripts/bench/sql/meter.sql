-- The kit's priced consume: creditkit_meter of one 'chat' event at the price the bench schema
-- sets (1 credit per event), no key. Variables: naccounts.
\set aid random(1, :naccounts)
select * from creditkit_meter(lpad(to_hex(:aid::integer), 32, '0')::uuid, 'chat');
