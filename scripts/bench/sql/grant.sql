-- The mix's grant: a purchase of 100 credits (a new bucket). Variables: naccounts.
\set aid random(1, :naccounts)
select * from creditkit_grant(lpad(to_hex(:aid::integer), 32, '0')::uuid, 100);
