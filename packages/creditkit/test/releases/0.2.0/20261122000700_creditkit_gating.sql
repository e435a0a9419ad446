-- creditkit gating: credit checks that live inside Postgres, next to your own tables.
--
--   creditkit_has_credits(n[, account, unit])  for RLS policies: does the caller (only the caller) have n spendable?
--   creditkit.charge_on_insert()   a trigger that meters the inserting user in the same transaction,
--                                  so a rollback undoes the charge and an empty account rejects the insert.
--
--   create trigger charge_image_gen before insert on public.tasks
--     for each row execute function creditkit.charge_on_insert('image_gen', '4');
--   create trigger charge_message before insert on public.messages
--     for each row execute function creditkit.charge_on_insert('message', '1', '', 'messages');

-- Security invoker: reads through RLS; it can only ever see the caller's own accounts, so it is
-- no oracle on anyone else's balance (for an account the caller may not read it is simply false).
create or replace function public.creditkit_has_credits(
  p_amount bigint default 1, p_account_id uuid default null, p_unit text default 'credits')
returns boolean
language plpgsql
stable
security invoker
set search_path = ''
set enable_seqscan = off
as $$
declare
  v_uid uuid := (select auth.uid());
  v_account_id uuid;
begin
  perform creditkit.check_amount(p_amount);
  if p_unit is distinct from 'credits' then
    perform creditkit.check_unit(p_unit);
  end if;
  v_account_id := coalesce(p_account_id, v_uid);
  if v_uid is null or not creditkit.can_access_account(v_account_id) then
    return false;
  end if;
  return (select b.balance >= p_amount from creditkit.live_buckets(v_account_id, p_unit, now()) b);
end;
$$;
comment on function public.creditkit_has_credits(bigint, uuid, text) is
  'Signed-in users, for RLS policies. True when your account (or a team account you may read) has at least p_amount spendable in p_unit (default credits); false for anyone else''s account and when signed out.';
revoke all on function public.creditkit_has_credits(bigint, uuid, text) from public, anon, authenticated, service_role;
grant execute on function public.creditkit_has_credits(bigint, uuid, text) to authenticated;

-- Trigger function. Arguments: event name, quantity (default '1'), optionally the name of a column
-- of the new row that holds the account id (team accounts; '' or absent: the inserting user), and
-- optionally a unit: without one the event is priced in credits (creditkit.meter); with one,
-- quantity units of it are spent (as creditkit_report does), recorded under the event name.
-- Security definer: it spends on behalf of the signed-in user, who may not write the ledger; the
-- account it charges is the caller's own or one the access function lets them read, never a
-- free choice. Trigger functions cannot be called through the API.
create or replace function creditkit.charge_on_insert()
returns trigger
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_uid uuid := (select auth.uid());
  v_account_id uuid;
  v_quantity bigint;
  v_result record;
begin
  if tg_op <> 'INSERT' or tg_level <> 'ROW' or tg_nargs not between 1 and 4 then
    raise exception using errcode = 'CK006',
      message = 'creditkit.charge_on_insert(event [, quantity [, account_column [, unit]]]) is a row-level INSERT trigger';
  end if;
  begin
    v_quantity := coalesce(tg_argv[1], '1')::bigint;
  exception when others then
    raise exception using errcode = 'CK006', message = format('invalid argument: quantity %L is not an integer', tg_argv[1]);
  end;
  -- No signed-in user is only acceptable from the server: anon (or a JWT without a subject)
  -- must not charge whatever account it names in the row.
  if v_uid is null then
    perform creditkit.assert_server_caller();
  end if;
  if tg_nargs >= 3 and tg_argv[2] <> '' then
    v_account_id := (to_jsonb(new) ->> tg_argv[2])::uuid;
  else
    v_account_id := v_uid;
  end if;
  -- A signed-in caller may only charge accounts they may read; a server insert (no user) must
  -- name the account in the row.
  if v_account_id is null or (v_uid is not null and not creditkit.can_access_account(v_account_id)) then
    raise exception using errcode = 'CK005', message = 'not allowed: no account to charge for this insert';
  end if;

  -- An account that never had credit cannot pay: the same answer as an empty one.
  if not exists (select 1 from creditkit.accounts a where a.id = v_account_id) then
    raise exception using errcode = 'CK002', message = 'insufficient credits: the account has no credit yet',
      detail = jsonb_build_object('balance', 0)::text;
  end if;
  if tg_nargs = 4 then
    if v_quantity is null or v_quantity < 1 or v_quantity > 9007199254740991 then
      perform creditkit.check_amount(v_quantity);
    end if;
    perform creditkit.check_request(null, tg_argv[0], null, now());
    select d.allowed, d.balance, d.amount, tg_argv[3] as unit into v_result
      from creditkit.debit(v_account_id, tg_argv[3], v_quantity, tg_argv[0], null,
                           jsonb_build_object('table', tg_table_schema || '.' || tg_table_name), null, null, now()) d;
  else
    select m.allowed, m.balance, m.amount, m.unit into v_result
      from creditkit.meter(v_account_id, tg_argv[0], v_quantity, '{}'::jsonb, null, null,
                           jsonb_build_object('table', tg_table_schema || '.' || tg_table_name), now()) m;
  end if;
  if not v_result.allowed then
    raise exception using
      errcode = 'CK002',
      message = format('insufficient credits: balance %s, required %s%s', v_result.balance, v_result.amount,
                       case when v_result.unit <> 'credits' then ' ' || v_result.unit else '' end),
      detail = jsonb_build_object('balance', v_result.balance, 'required', v_result.amount, 'unit', v_result.unit)::text;
  end if;
  return new;
end;
$$;
comment on function creditkit.charge_on_insert() is
  'Trigger: charge_on_insert(event [, quantity [, account_column [, unit]]]) meters the inserting user''s account (in credits at the event''s price, or quantity of the unit) in the same transaction; CK002 rejects the insert when the account cannot pay.';
revoke all on function creditkit.charge_on_insert() from public, anon, authenticated, service_role;
