-- creditkit 0011: batch consume, for apps that buffer usage and flush it in one call.
--
-- creditkit_consume_batch(p_events jsonb) takes a JSON array of up to 1000 usage events, each
-- with the arguments of creditkit_consume, and answers one row per event in input order. It runs
-- in three phases inside the caller's one transaction:
--   1. validate every item (the structure, then each item's values with the same checks and codes
--      as creditkit_consume), before anything is locked or written: a bad item anywhere fails the
--      whole call and changes nothing;
--   2. lock every distinct account of the batch in uuid order (creditkit.lock_account, which also
--      books what is due by p_now). Every batch takes its locks in the same order, so batches that
--      share accounts queue instead of deadlocking; a single consume holds one account lock only;
--   3. apply the items in input order, each by calling creditkit_consume itself, so an item
--      behaves exactly as that call would at that point: blocked items answer allowed = false and
--      write nothing, a key already used (earlier in the batch or before it) replays the first
--      result, and a key reused with different parameters raises CK004, which rolls back the
--      whole batch. creditkit_consume finds its account already locked by this transaction and
--      nothing due, so re-entering it costs a row re-lock and the checks, not a second booking.
--
-- creditkit_consume is not changed: its hot path is the same as before this migration.

-- Security definer: it writes the ledger through creditkit_consume; service_role only.
create or replace function public.creditkit_consume_batch(
  p_events jsonb,
  p_now timestamptz default now())
returns table (ordinal integer, allowed boolean, balance bigint, transaction_id bigint)
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  v_count integer;
  v_item jsonb;
  v_i integer;
  v_value jsonb;
  v_number numeric;
  v_unknown text;
  v_account_text text;
  v_accounts uuid[];
  v_amounts bigint[];
  v_events text[];
  v_keys text[];
  v_metadata jsonb[];
  v_costs bigint[];
  v_account uuid;
  v_amount bigint;
  v_cost bigint;
  v_event text;
  v_key text;
  v_meta jsonb;
begin
  perform creditkit.assert_server_caller();

  -- 1. Validate everything before locking anything.
  if p_events is null or jsonb_typeof(p_events) <> 'array' then
    raise exception using errcode = 'CK006', message = 'invalid argument: events must be a JSON array';
  end if;
  v_count := jsonb_array_length(p_events);
  if v_count < 1 or v_count > 1000 then
    raise exception using errcode = 'CK006',
      message = format('invalid argument: events must hold 1 to 1000 items, not %s', v_count);
  end if;
  perform creditkit.check_request(null, null, null, p_now);

  for v_item, v_i in select e.value, e.ordinality::integer from jsonb_array_elements(p_events) with ordinality e loop
    if jsonb_typeof(v_item) <> 'object' then
      raise exception using errcode = 'CK006',
        message = format('invalid argument: item %s must be a JSON object', v_i);
    end if;
    if v_item - array['account_id', 'amount', 'event', 'idempotency_key', 'metadata', 'cost_micros'] <> '{}'::jsonb then
      select string_agg(k.key, ', ' order by k.key) into v_unknown
        from jsonb_object_keys(v_item - array['account_id', 'amount', 'event', 'idempotency_key', 'metadata', 'cost_micros']) k(key);
      raise exception using errcode = 'CK006',
        message = format('invalid argument: item %s has unknown keys: %s (allowed: account_id, amount, event, idempotency_key, metadata, cost_micros)', v_i, v_unknown);
    end if;

    -- The checks of creditkit_consume, in its order: amount, cost, key/event/metadata, account.
    -- A key that is absent or JSON null is SQL NULL, as when the argument is left out.
    v_value := nullif(v_item -> 'amount', 'null'::jsonb);
    v_amount := null;
    if v_value is not null then
      if jsonb_typeof(v_value) <> 'number' then
        raise exception using errcode = 'CK001',
          message = format('invalid amount: item %s: %s (must be an integer from 1 to 9007199254740991)', v_i, left(v_value::text, 40));
      end if;
      v_number := v_value::text::numeric;
      if v_number <> trunc(v_number) or v_number < 1 or v_number > 9007199254740991 then
        raise exception using errcode = 'CK001',
          message = format('invalid amount: item %s: %s (must be an integer from 1 to 9007199254740991)', v_i, left(v_value::text, 40));
      end if;
      v_amount := v_number::bigint;
    end if;
    perform creditkit.check_amount(v_amount);

    v_value := nullif(v_item -> 'cost_micros', 'null'::jsonb);
    v_cost := null;
    if v_value is not null then
      if jsonb_typeof(v_value) <> 'number' then
        raise exception using errcode = 'CK001',
          message = format('invalid amount: item %s: cost_micros %s (money is NULL or an integer from 0 to 9007199254740991)', v_i, left(v_value::text, 40));
      end if;
      v_number := v_value::text::numeric;
      if v_number <> trunc(v_number) or v_number < 0 or v_number > 9007199254740991 then
        raise exception using errcode = 'CK001',
          message = format('invalid amount: item %s: cost_micros %s (money is NULL or an integer from 0 to 9007199254740991)', v_i, left(v_value::text, 40));
      end if;
      v_cost := v_number::bigint;
    end if;
    perform creditkit.check_money(v_cost);

    v_value := nullif(v_item -> 'event', 'null'::jsonb);
    if v_value is not null and jsonb_typeof(v_value) <> 'string' then
      raise exception using errcode = 'CK006',
        message = format('invalid argument: item %s: event name must be a string', v_i);
    end if;
    v_event := v_value #>> '{}';
    v_value := nullif(v_item -> 'idempotency_key', 'null'::jsonb);
    if v_value is not null and jsonb_typeof(v_value) <> 'string' then
      raise exception using errcode = 'CK006',
        message = format('invalid argument: item %s: idempotency key must be a string', v_i);
    end if;
    v_key := v_value #>> '{}';
    v_meta := nullif(v_item -> 'metadata', 'null'::jsonb);
    perform creditkit.check_request(v_key, v_event, v_meta, p_now);

    v_value := nullif(v_item -> 'account_id', 'null'::jsonb);
    if v_value is null then
      raise exception using errcode = 'CK006',
        message = format('invalid argument: item %s: account id must not be NULL', v_i);
    end if;
    v_account_text := v_value #>> '{}';
    if jsonb_typeof(v_value) <> 'string' then
      v_account := null;
    elsif v_account_text ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
      v_account := v_account_text::uuid;  -- the usual form: no exception block needed
    else
      begin  -- the other spellings Postgres accepts for a uuid (braces, no hyphens, ...)
        v_account := v_account_text::uuid;
      exception when invalid_text_representation then
        v_account := null;
      end;
    end if;
    if v_account is null then
      raise exception using errcode = 'CK006',
        message = format('invalid argument: item %s: account id %s is not a uuid', v_i, left(v_value::text, 40));
    end if;

    v_accounts[v_i] := v_account;
    v_amounts[v_i] := v_amount;
    v_events[v_i] := v_event;
    v_keys[v_i] := v_key;
    v_metadata[v_i] := v_meta;
    v_costs[v_i] := v_cost;
  end loop;

  -- 2. Lock every account of the batch in one fixed order (CK003 for an unknown one).
  for v_account in select distinct a.id from unnest(v_accounts) a(id) order by a.id loop
    perform creditkit.lock_account(v_account, p_now);
  end loop;

  -- 3. Apply the items in input order, each exactly as creditkit_consume.
  for v_i in 1 .. v_count loop
    select c.allowed, c.balance, c.transaction_id into allowed, balance, transaction_id
      from public.creditkit_consume(v_accounts[v_i], v_amounts[v_i], v_events[v_i], v_keys[v_i],
                                    v_metadata[v_i], v_costs[v_i], p_now) c;
    ordinal := v_i;
    return next;
  end loop;
end;
$$;
comment on function public.creditkit_consume_batch(jsonb, timestamptz) is
  'Server only. Spends for 1 to 1000 usage events in one transaction: p_events is a JSON array of {account_id, amount, event?, idempotency_key?, metadata?, cost_micros?}, and each event is applied in order exactly as creditkit_consume would apply it, answering one row per event (ordinal from 1, allowed, balance, transaction_id). Any invalid event fails the whole call and changes nothing; a blocked event is allowed=false. Idempotent per event by key.';
revoke all on function public.creditkit_consume_batch(jsonb, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_consume_batch(jsonb, timestamptz) to service_role;
