-- creditkit_check of 1 credit: whether it could be spent now and the spendable balance, spending
-- nothing (while nothing is due on the account it writes nothing and takes no lock). Variables:
-- naccounts.
\set aid random(1, :naccounts)
select * from creditkit_check(lpad(to_hex(:aid::integer), 32, '0')::uuid, 'credits', 1);
