-- creditkit 0017: the range rules on the hot tables become domains.
--
-- PostgreSQL 15 keeps a table's CHECK constraints as text in the catalogue and turns them back
-- into executable expressions (parse, then plan) each time a statement that writes the table
-- starts. A plpgsql function runs every statement as its own executor run, so a consume paid for
-- the account's three CHECKs and the ledger's five on every call: about 4 us each, eight in all,
-- which was a third of the function time of a consume (profiled: stringToNode and
-- expression_planner under ExecRelCheck). A domain's constraints are parsed and planned once per
-- connection and kept in the type cache; a write only evaluates them, and only for the columns
-- it assigns. Measured with the same harness (20,000 consumes in one transaction): about 75 us a
-- consume before, about 40 us after; the R+L baseline, whose tables copy the kit's, the same.
--
-- The rules themselves do not change: every value stays an integer in [0, 2^53-1] (a ledger
-- amount: non-zero, in [-(2^53-1), 2^53-1]), enforced for every writer, the owner included.
-- A violation is still SQLSTATE 23514 (check_violation), now naming the domain's constraint.
--
-- Installing: the domains are created without their constraint, the columns retyped (a binary-
-- compatible change: no table rewrite, no index rebuild; a brief ACCESS EXCLUSIVE lock on the
-- two tables), then each constraint is added, which checks the existing rows in one scan.
-- creditkit.grants and creditkit.holds keep their CHECKs: they are written off the consume path
-- and some of their rules compare two columns, which a domain cannot express.

create domain creditkit.credits as bigint;
comment on domain creditkit.credits is 'A count of credits: an integer in [0, 2^53-1], exact in JavaScript.';
create domain creditkit.credit_change as bigint;
comment on domain creditkit.credit_change is 'A signed change of a balance: non-zero, within +/-(2^53-1).';
create domain creditkit.micros as bigint;
comment on domain creditkit.micros is 'Money in micros of the reporting currency (1 USD = 1000000): an integer in [0, 2^53-1].';
create domain creditkit.ledger_kind as text;
comment on domain creditkit.ledger_kind is 'What a ledger row records: grant, consume, expire or adjust.';

alter table creditkit.accounts
  drop constraint accounts_balance_range,
  drop constraint accounts_held_range,
  drop constraint accounts_undrawn_range,
  alter column balance type creditkit.credits,
  alter column held type creditkit.credits,
  alter column undrawn type creditkit.credits;

alter table creditkit.ledger
  drop constraint ledger_kind,
  drop constraint ledger_amount_range,
  drop constraint ledger_balance_after_range,
  drop constraint ledger_cost_range,
  drop constraint ledger_revenue_range,
  alter column kind type creditkit.ledger_kind,
  alter column amount type creditkit.credit_change,
  alter column balance_after type creditkit.credits,
  alter column cost_micros type creditkit.micros,
  alter column revenue_micros type creditkit.micros;

alter domain creditkit.credits add constraint credits_range check (value between 0 and 9007199254740991);
alter domain creditkit.credit_change add constraint credit_change_range
  check (value <> 0 and value between -9007199254740991 and 9007199254740991);
alter domain creditkit.micros add constraint micros_range check (value between 0 and 9007199254740991);
alter domain creditkit.ledger_kind add constraint ledger_kind_known
  check (value in ('grant', 'consume', 'expire', 'adjust'));

-- A plpgsql RETURN QUERY must match the declared column types exactly, and a domain is not its
-- base type: history hands the columns back as the text and bigint it always declared.
create or replace function creditkit.history_page(p_account_id uuid, p_limit integer, p_before_id bigint)
returns table (id bigint, kind text, amount bigint, balance_after bigint, grant_id bigint, event text,
               idempotency_key text, metadata jsonb, created_at timestamptz)
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception using errcode = 'CK006', message = 'invalid argument: limit must be from 1 to 1000';
  end if;
  return query
    select l.id, l.kind::text, l.amount::bigint, l.balance_after::bigint, l.grant_id, l.event, l.idempotency_key,
           l.metadata, l.created_at
      from creditkit.ledger l
     where l.account_id = p_account_id and (p_before_id is null or l.id < p_before_id)
     order by l.id desc
     limit p_limit;
end;
$$;
