-- creditkit 0020: the ledger's reference to its grant is checked only for rows that have one.
--
-- ledger.grant_id was a foreign key to creditkit.grants. PostgreSQL queues and fires a foreign
-- key's check trigger for every inserted row, and only then sees that the value is NULL. Every
-- consume row has a NULL grant_id, so a 100-event batch paid for 100 checks that check nothing.
-- Measured on 100-row INSERTs into the ledger, that was 175-350 us, about a tenth of the batch.
-- A single consume paid for the same thing once.
--
-- The same rule now lives in two triggers:
--  - After INSERT (or an UPDATE of grant_id, which the append-only trigger refuses anyway), only
--    for rows whose grant_id is not NULL, since a trigger's WHEN condition is tested before
--    anything is queued: the grant must exist. It takes FOR KEY SHARE on the grant, as the
--    foreign key's own check did, so a concurrent delete waits for this transaction.
--  - Before DELETE on grants: a grant that a ledger row names cannot be deleted (the foreign
--    key's NO ACTION). No kit function deletes grants.
-- Both raise foreign_key_violation (23503), the SQLSTATE the foreign key raised.
--
-- One thing the foreign key did that the triggers do not: refuse a TRUNCATE of grants without
-- the ledger. The ledger itself refuses TRUNCATE (CK008), and only the tables' owner can
-- truncate either.

alter table creditkit.ledger drop constraint if exists ledger_grant_id_fkey;

create or replace function creditkit.ledger_grant_exists()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform from creditkit.grants g where g.id = new.grant_id for key share;
  if not found then
    raise exception using
      errcode = 'foreign_key_violation',
      message = format('insert or update on table "ledger" violates its grant reference: grant %s does not exist', new.grant_id),
      table = 'ledger', schema = 'creditkit', column = 'grant_id';
  end if;
  return null;
end;
$$;
comment on function creditkit.ledger_grant_exists() is
  'Trigger: a ledger row that names a grant needs that grant (23503). Fires only for rows with a grant_id.';
revoke all on function creditkit.ledger_grant_exists() from public, anon, authenticated, service_role;

create constraint trigger ledger_grant_exists
  after insert or update of grant_id on creditkit.ledger
  for each row
  when (new.grant_id is not null)
  execute function creditkit.ledger_grant_exists();

create or replace function creditkit.grant_not_in_ledger()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if exists (select from creditkit.ledger l where l.grant_id = old.id) then
    raise exception using
      errcode = 'foreign_key_violation',
      message = format('grant %s is still named by the ledger and cannot be deleted', old.id),
      table = 'grants', schema = 'creditkit';
  end if;
  return old;
end;
$$;
comment on function creditkit.grant_not_in_ledger() is
  'Trigger: a grant the ledger names cannot be deleted (23503).';
revoke all on function creditkit.grant_not_in_ledger() from public, anon, authenticated, service_role;

create trigger grants_not_in_ledger
  before delete on creditkit.grants
  for each row execute function creditkit.grant_not_in_ledger();
