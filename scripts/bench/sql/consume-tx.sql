-- The kit's plain consume inside a transaction block, as PostgREST calls every RPC: on Citus a
-- call in a transaction block is not delegated (it runs on the coordinator, a round trip to the
-- account's worker per statement), which is also what `creditkit distribute` without --delegate
-- gives every call. Variables: naccounts, zipf (0|1).
\if :zipf
\set aid random_zipfian(1, :naccounts, 1.1)
\else
\set aid random(1, :naccounts)
\endif
begin;
select * from creditkit_consume(lpad(to_hex(:aid::integer), 32, '0')::uuid, 1);
commit;
