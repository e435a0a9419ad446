-- creditkit batch: creditkit_consume_batch spends credits (or another metered unit, one per call)
-- for up to 1000 buffered usage events in one transaction, each exactly as creditkit_consume would. The usual batch (every item valid, one
-- account, keys new) is one guarded UPDATE and one INSERT; anything else goes item by item.

-- One batch item with the types creditkit_consume types its arguments with, as
-- jsonb_populate_recordset reads it. Internal: only the batch reads items through it.

create type creditkit.batch_item as (
  account_id uuid,
  amount bigint,
  event text,
  idempotency_key text,
  metadata jsonb,
  cost_micros bigint);

-- A running total of bigints that stays bigint: sum(bigint) returns numeric. Internal.
create aggregate creditkit.running_sum(bigint) (sfunc = pg_catalog.int8pl, stype = bigint);
comment on aggregate creditkit.running_sum(bigint) is
  'Sum of bigints as a bigint (int8pl: raises on overflow). The batch''s running balances use it in a window.';
revoke all on function creditkit.running_sum(bigint) from public, anon, authenticated, service_role;

-- Security definer: writes the kit's tables, which no client role may write; service_role only.
create or replace function public.creditkit_consume_batch(
  p_events jsonb,
  p_now timestamptz default now(),
  p_unit text default 'credits')
returns table (ordinal integer, allowed boolean, balance bigint, transaction_id bigint)
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  c_keys constant text[] := array['account_id', 'amount', 'event', 'idempotency_key', 'metadata', 'cost_micros'];
  c_max constant bigint := 9007199254740991;
  v_count integer;
  v_bad integer;
  v_keyed integer;         -- items with an idempotency key
  v_common boolean;        -- the common case: every item spends
  v_item jsonb;
  v_i integer;
  v_value jsonb;
  v_number numeric;
  v_unknown text;
  v_account_text text;
  v_account uuid;
  v_amount bigint;
  v_cost bigint;
  v_event text;
  v_key text;
  v_meta jsonb;
  -- per item, in input order
  v_accounts uuid[];
  v_amounts bigint[];
  v_events text[];
  v_keys text[];
  v_metadata jsonb[];
  v_costs bigint[];
  v_slot integer[];        -- the item's account as an index into the per-account arrays
  v_group integer[];       -- the first item with the same (account, key); NULL without a key
  v_prior_id bigint[];     -- the ledger row an earlier call made with this key, if any
  v_prior_kind text[];
  v_prior_amount bigint[];
  v_prior_event text[];
  v_prior_meta jsonb[];
  v_prior_cost bigint[];
  v_prior_after bigint[];
  v_prior record;          -- one of them, as read
  v_owner integer[];       -- per group: the item of this batch that used the key, 0 if none yet
  v_allowed boolean[];
  v_answer bigint[];       -- balance answered
  v_after bigint[];        -- ledger balance_after of an item that spends
  v_tx bigint[];           -- transaction id answered
  -- per distinct account, in uuid order
  v_ids uuid[];
  v_spendable bigint[];
  v_stored bigint[];
  v_stored_one bigint;     -- the account being locked: its balance, held, and whether something is due
  v_held bigint;
  v_due boolean;
  v_draw boolean[];        -- per account: draw its buckets now instead of counting undrawn (see step 2)
  v_spent bigint[];
  v_rows integer[];
  v_s integer;
  v_o integer;
  v_n integer := 0;
  v_new boolean[];         -- the item writes a new ledger row (with id v_tx)
  v_seq regclass;          -- the ledger's id sequence, looked up only where ids are drawn ahead
  v_total bigint;          -- what all the items spend
  v_one uuid;              -- the first item's account
  v_one_text text;         -- ... as the item spells it
  v_fast boolean;
  v_same boolean;         -- every item names the first item's account
  v_fast_keys text[];      -- the keys, for the one-account path's test under the lock
begin
  -- (the caller test of assert_server_caller, which raises, inlined: a call costs about 10 us)
  if current_setting('role', true) in ('anon', 'authenticated') or auth.role() in ('anon', 'authenticated') then
    perform creditkit.assert_server_caller();
  end if;

  -- 1. Validate everything before locking anything.
  if p_events is null or jsonb_typeof(p_events) <> 'array' then
    raise exception using errcode = 'CK006', message = 'invalid argument: events must be a JSON array';
  end if;
  v_count := jsonb_array_length(p_events);
  if v_count < 1 or v_count > 1000 then
    raise exception using errcode = 'CK006',
      message = format('invalid argument: events must hold 1 to 1000 items, not %s', v_count);
  end if;
  if p_now is null or not isfinite(p_now) then
    perform creditkit.check_request(null, null, null, p_now);  -- (raises CK006)
  end if;
  if p_unit is distinct from 'credits' then
    perform creditkit.check_unit(p_unit);  -- (raises CK015)
  end if;

  -- Typing, in two passes over the array and without building anything per item. First one
  -- jsonpath test for the JSON types a cast would take silently (an amount written as a string,
  -- an event, key or account id written as a number): any such item sends the batch to the
  -- item-by-item checks. Then jsonb_to_recordset casts every item's fields in one pass, and one
  -- query checks them and adds up what the fast path needs: whether every item is valid (v_bad
  -- counts those that are not), the total, whether every item names the first item's account,
  -- and the keys (whether they all differ is tested only when there are any). The account ids
  -- are compared as the items spell them (strings, by the jsonpath test): only the first is cast
  -- to uuid here, and a batch that spells one account two ways takes the general path, which
  -- casts them all. A field that no cast takes (a string that is not a uuid, a number with a
  -- fraction or beyond bigint, an item that is not an object) raises inside the block, and the
  -- item-by-item checks below then find that item and raise its own error, with
  -- creditkit_consume's code and message; so does an item with a key the kit does not know,
  -- which the cast ignores and a test of its own finds.
  if jsonb_path_exists(p_events,
       'lax $[*] ? (!(@.account_id.type() == "string") || !(@.amount.type() == "number")
                   || (exists(@.cost_micros) && !(@.cost_micros.type() == "number" || @.cost_micros.type() == "null"))
                   || (exists(@.event) && !(@.event.type() == "string" || @.event.type() == "null"))
                   || (exists(@.idempotency_key) && !(@.idempotency_key.type() == "string" || @.idempotency_key.type() == "null")))') then
    v_bad := 1;
  else
    begin
      v_one_text := p_events -> 0 ->> 'account_id';
      v_one := v_one_text::uuid;
      select count(*) filter (where not coalesce(r.account_id is not null and r.amount between 1 and c_max
                 and (r.cost_micros is null or r.cost_micros between 0 and c_max)
                 and (r.event is null or (length(r.event) <= 200 and r.event ~ '[^[:space:]]'))
                 and (r.idempotency_key is null or (length(r.idempotency_key) <= 255 and r.idempotency_key ~ '[^[:space:]]'))
                 and (r.metadata is null or (jsonb_typeof(r.metadata) = 'object' and octet_length(r.metadata::text) <= 8192
                                             and not r.metadata ?| creditkit.reserved_metadata_keys())), false)),
             sum(r.amount), coalesce(bool_and(r.account_id = v_one_text), false),
             count(r.idempotency_key),
             array_agg(r.idempotency_key) filter (where r.idempotency_key is not null)
        into v_bad, v_total, v_same, v_keyed, v_fast_keys
        from jsonb_to_recordset(p_events)
             r(account_id text, amount bigint, event text, idempotency_key text, metadata jsonb, cost_micros bigint);
      if v_bad = 0 and exists (select from jsonb_array_elements(p_events) e(item) where e.item - c_keys <> '{}'::jsonb) then
        v_bad := 1;
      end if;
    exception when others then
      v_bad := 1;
    end;
  end if;

  -- The usual batch: every item valid, all for one account (an app flushing one user's events),
  -- no key twice, and credit for all of it. Then one guarded UPDATE spends the total (it locks the
  -- row only if it passes, as creditkit_consume's fast path does), and one INSERT reads the items
  -- again, writes their rows in input order and answers each from its running balance. Anything
  -- else (an unknown account, too little credit, something due, a key used before) goes on to the
  -- general path below, which decides item by item.
  v_fast := v_bad = 0 and v_same;
  if v_fast and v_keyed > 0 then
    v_fast := (select count(distinct k.key) from unnest(v_fast_keys) k(key)) = v_keyed;
  end if;
  if v_fast then
    update creditkit.accounts a
       set balance = a.balance - v_total, undrawn = a.undrawn + v_total, version = a.version + v_count
     where a.id = v_one and a.unit = p_unit and a.balance - a.held >= v_total and (a.due_at is null or a.due_at > p_now)
       and (a.alert_at is null or a.balance - a.held - v_total > a.alert_at)
    returning a.balance + v_total, a.held into v_stored_one, v_held;
    v_fast := found;
    if v_fast and v_keyed > 0 then
      -- Under the row lock every earlier write of this account's ledger is visible: a key used
      -- before makes this a (partial) replay, which the general path answers; undo the debit.
      perform from creditkit.ledger_keys k where k.account_id = v_one and k.idempotency_key = any(v_fast_keys);
      if found then
        update creditkit.accounts a
           set balance = a.balance + v_total, undrawn = a.undrawn - v_total, version = a.version - v_count
         where a.id = v_one and a.unit = p_unit;
        v_fast := false;
      end if;
    end if;
    if v_fast then
      return query
        with written as (
          insert into creditkit.ledger (account_id, kind, amount, balance_after, event, idempotency_key,
                                        cost_micros, metadata, created_at, unit)
          select v_one, 'consume', -r.amount,
                 v_stored_one - creditkit.running_sum(r.amount) over (order by r.ordinality rows unbounded preceding),
                 r.event, r.idempotency_key, r.cost_micros, coalesce(r.metadata, '{}'::jsonb), p_now, p_unit
            -- (every item names v_one: the account id is not read again)
            from rows from (jsonb_to_recordset(p_events)
                              as (amount bigint, event text, idempotency_key text, metadata jsonb, cost_micros bigint))
                 with ordinality r(amount, event, idempotency_key, metadata, cost_micros, ordinality)
           order by r.ordinality  -- ids are drawn in this order, so they follow the input
          returning id, balance_after, idempotency_key
        ), keyed as (
          insert into creditkit.ledger_keys (account_id, idempotency_key, ledger_id)
          select v_one, w.idempotency_key, w.id from written w where w.idempotency_key is not null
        )
        select (row_number() over (order by w.id))::integer, true, w.balance_after - v_held, w.id
          from written w order by w.id;
      return;
    end if;
  end if;

  -- The general path works on per-item arrays: read them from the items, which are valid (the
  -- same casts passed above, but for the account ids, which are cast here), or, when one is not,
  -- from the item-by-item checks below.
  if v_bad = 0 then
    begin
      select array_agg(r.account_id), array_agg(r.amount), array_agg(r.event), array_agg(r.idempotency_key),
             array_agg(r.metadata), array_agg(r.cost_micros)
        into v_accounts, v_amounts, v_events, v_keys, v_metadata, v_costs
        from (select * from jsonb_populate_recordset(null::creditkit.batch_item, p_events) with ordinality x
               order by x.ordinality) r;  -- the aggregates take the rows in this order: one sort instead of one per array
    exception when others then
      v_bad := 1;  -- an account id that is not a uuid
    end;
  end if;

  if v_bad > 0 then
    -- Item by item, in order, with the checks and messages of creditkit_consume: raises for the
    -- first bad item. (It also fills the arrays, for the spellings the query above left out, such
    -- as an amount written 5.0.)
    for v_item, v_i in select e.value, e.ordinality::integer from jsonb_array_elements(p_events) with ordinality e loop
      if jsonb_typeof(v_item) <> 'object' then
        raise exception using errcode = 'CK006',
          message = format('invalid argument: item %s must be a JSON object', v_i);
      end if;
      if v_item - c_keys <> '{}'::jsonb then
        select string_agg(k.key, ', ' order by k.key) into v_unknown
          from jsonb_object_keys(v_item - c_keys) k(key);
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
    v_keyed := cardinality(array_remove(v_keys, null));
  end if;

  -- 2. Lock every account's row of the unit in one fixed order, by id (CK003 for an unknown account;
  -- a known one with nothing in the unit spends nothing, as creditkit_consume answers), and take
  -- its spendable and stored balance under the lock. Like creditkit_consume's fast path, the
  -- batch never reads a bucket: while nothing is due it leaves what the account has not drawn
  -- yet (undrawn) where it is and adds to it; only an account with something due goes through
  -- lock_account, which books it (drawing first).
  select array_agg(d.id order by d.id) into v_ids from (select distinct a.id from unnest(v_accounts) a(id)) d;
  for v_s in 1 .. cardinality(v_ids) loop
    select a.balance, a.held, a.due_at <= p_now into v_stored_one, v_held, v_due
      from creditkit.accounts a where a.id = v_ids[v_s] and a.unit = p_unit
       for update;
    v_draw[v_s] := false;
    v_due := coalesce(v_due, false);
    if not found then
      -- (another unit's row opens on its plan limit; a known account without one is blocked, with
      -- no row to write; an unknown account is CK003)
      v_due := p_unit = 'credits' or creditkit.unit_row_ready(v_ids[v_s], p_unit, p_now);
      if not v_due then
        v_spendable[v_s] := 0;
        v_stored[v_s] := 0;
        continue;
      end if;
    end if;
    if v_due then
      v_spendable[v_s] := creditkit.lock_account(v_ids[v_s], p_unit, p_now);  -- (raises CK003 if not found)
      -- Still due after booking: expired credit stays for open holds (book_expired). What the
      -- batch spends must not come out of it, so it is drawn now, from the credit not expired,
      -- as creditkit_consume's slow path draws, instead of being left to the next draw.
      select a.balance, a.due_at <= p_now into v_stored_one, v_due
        from creditkit.accounts a where a.id = v_ids[v_s] and a.unit = p_unit;
      v_stored[v_s] := v_stored_one;
      v_draw[v_s] := coalesce(v_due, false);
    else
      v_spendable[v_s] := greatest(v_stored_one - v_held, 0);
      v_stored[v_s] := v_stored_one;
    end if;
  end loop;

  -- 3. Per item: its account's slot, its key group, and the row an earlier call made with its key.
  -- Without any key in the batch (the usual case) only the slot is needed.
  if v_keyed = 0 then
    select array_agg(array_position(v_ids, u.account_id) order by u.i) into v_slot
      from unnest(v_accounts) with ordinality u(account_id, i);
  else
    select array_agg(array_position(v_ids, x.account_id) order by x.i), array_agg(x.grp order by x.i)
      into v_slot, v_group
      from (select u.account_id, u.i,
                   case when u.key is not null
                        then first_value(u.i) over (partition by u.account_id, u.key order by u.i) end as grp
              from unnest(v_accounts, v_keys) with ordinality u(account_id, key, i)) x;
    v_prior_id := array_fill(null::bigint, array[v_count]);
    v_prior_kind := array_fill(null::text, array[v_count]);
    v_prior_amount := array_fill(null::bigint, array[v_count]);
    v_prior_event := array_fill(null::text, array[v_count]);
    v_prior_meta := array_fill(null::jsonb, array[v_count]);
    v_prior_cost := array_fill(null::bigint, array[v_count]);
    v_prior_after := array_fill(null::bigint, array[v_count]);
    -- One probe of each primary key per keyed item, by its account (on Citus, on the account's
    -- shard: a join of the items with the ledger over every shard is refused there).
    for v_i in 1 .. v_count loop
      continue when v_keys[v_i] is null;
      -- (a key used in another unit names another request: its kind reads consume:<unit>)
      select l.id, l.kind || case when l.unit <> p_unit then ':' || l.unit else '' end as kind, l.amount, l.event,
             l.metadata, l.cost_micros, l.balance_after
        into v_prior
        from creditkit.ledger l
       where l.account_id = v_accounts[v_i]
         and l.id = (select k.ledger_id from creditkit.ledger_keys k
                      where k.account_id = v_accounts[v_i] and k.idempotency_key = v_keys[v_i]);
      if found then
        v_prior_id[v_i] := v_prior.id;
        v_prior_kind[v_i] := v_prior.kind;
        v_prior_amount[v_i] := v_prior.amount;
        v_prior_event[v_i] := v_prior.event;
        v_prior_meta[v_i] := v_prior.metadata;
        v_prior_cost[v_i] := v_prior.cost_micros;
        v_prior_after[v_i] := v_prior.balance_after;
      end if;
    end loop;
  end if;
  -- The common case, all in SQL: no key seen before or twice, and every account can pay for all
  -- its items. Then every item spends, in order, and the rest is running sums. (Tested in steps:
  -- one condition that folds to a constant for some parameter values makes the plan cache plan
  -- it again on every call.)
  v_common := v_keyed = 0;
  if not v_common then
    v_common := v_prior_id = array_fill(null::bigint, array[v_count])
                and not exists (select from unnest(v_group) with ordinality g(grp, i) where g.grp <> g.i);
  end if;
  if v_common then
    select array_agg(t.spent order by t.slot), array_agg(t.n order by t.slot) into v_spent, v_rows
      from (select u.slot, sum(u.amount)::bigint as spent, count(*)::integer as n
              from unnest(v_slot, v_amounts) u(slot, amount) group by u.slot) t;
    v_common := not exists (select from unnest(v_spent, v_spendable) t(spent, spendable) where t.spent > t.spendable);
  end if;
  if v_common then
    -- (due_at is set as it is so that the balance watch looks at the rows: creditkit.watch_balance)
    update creditkit.accounts a
       set balance = a.balance - t.spent, undrawn = a.undrawn + case when t.draw then 0 else t.spent end,
           version = a.version + t.n, due_at = a.due_at
      from unnest(v_ids, v_spent, v_rows, v_draw) t(id, spent, n, draw)
     where a.id = t.id and a.unit = p_unit;
    perform creditkit.draw_down(t.id, p_unit, t.spent, p_now)
       from unnest(v_ids, v_spent, v_draw) t(id, spent, draw) where t.draw and t.spent > 0;
    -- ids in input order: nextval is called once per row of generate_series, in order
    v_seq := pg_get_serial_sequence('creditkit.ledger', 'id')::regclass;
    select array_agg(nextval(v_seq)) into v_tx from generate_series(1, v_count);
    return query
      with x as materialized (
        select u.i::integer as i, u.account_id, u.amount, u.event, u.key, u.meta, u.cost, u.slot,
               creditkit.running_sum(u.amount) over (partition by u.slot order by u.i rows unbounded preceding) as cum
          from unnest(v_accounts, v_amounts, v_events, v_keys, v_metadata, v_costs, v_slot)
               with ordinality u(account_id, amount, event, key, meta, cost, slot, i)
      ), written as (
        insert into creditkit.ledger (id, account_id, kind, amount, balance_after, event, idempotency_key,
                                      cost_micros, metadata, created_at, unit)
        overriding system value
        select v_tx[x.i], x.account_id, 'consume', -x.amount, v_stored[x.slot] - x.cum, x.event, x.key, x.cost,
               coalesce(x.meta, '{}'::jsonb), p_now, p_unit
          from x order by x.i
      ), keyed as (
        insert into creditkit.ledger_keys (account_id, idempotency_key, ledger_id)
        select x.account_id, x.key, v_tx[x.i] from x where x.key is not null
      )
      select x.i, true, (v_spendable[x.slot] - x.cum)::bigint, v_tx[x.i] from x order by x.i;
    return;
  end if;

  -- (filled to full length: assigning element i of an empty array would start it at i)
  v_spent := array_fill(0::bigint, array[cardinality(v_ids)]);  -- the loop starts from nothing spent
  v_rows := array_fill(0, array[cardinality(v_ids)]);
  v_owner := array_fill(0, array[v_count]);
  v_new := array_fill(false, array[v_count]);
  v_allowed := array_fill(null::boolean, array[v_count]);
  v_answer := array_fill(null::bigint, array[v_count]);
  v_after := array_fill(null::bigint, array[v_count]);
  v_tx := array_fill(null::bigint, array[v_count]);

  -- 4. Decide every item in order, as consecutive creditkit_consume calls would.
  v_seq := pg_get_serial_sequence('creditkit.ledger', 'id')::regclass;
  for v_i in 1 .. v_count loop
    v_s := v_slot[v_i];
    v_meta := coalesce(v_metadata[v_i], '{}'::jsonb);
    if v_prior_id[v_i] is not null then
      -- the key was used before this batch (find_replay's rule and message)
      if v_prior_kind[v_i] <> 'consume' or v_prior_amount[v_i] <> -v_amounts[v_i]
         or v_prior_event[v_i] is distinct from v_events[v_i] or v_prior_meta[v_i] <> v_meta
         or v_prior_cost[v_i] is distinct from v_costs[v_i] then
        raise exception using
          errcode = 'CK004',
          message = format('idempotency conflict: key %L was already used for a different %s request', v_keys[v_i], v_prior_kind[v_i]),
          detail = jsonb_build_object('transaction_id', v_prior_id[v_i])::text;
      end if;
      v_allowed[v_i] := true;
      v_answer[v_i] := v_prior_after[v_i];
      v_tx[v_i] := v_prior_id[v_i];
      continue;
    end if;
    if v_group[v_i] is not null and v_owner[v_group[v_i]] > 0 then
      -- the key was used by an earlier item of this batch
      v_o := v_owner[v_group[v_i]];
      if v_amounts[v_o] <> v_amounts[v_i] or v_events[v_o] is distinct from v_events[v_i]
         or coalesce(v_metadata[v_o], '{}'::jsonb) <> v_meta or v_costs[v_o] is distinct from v_costs[v_i] then
        raise exception using
          errcode = 'CK004',
          message = format('idempotency conflict: key %L was already used for a different consume request', v_keys[v_i]),
          detail = jsonb_build_object('transaction_id', v_tx[v_o])::text;
      end if;
      v_allowed[v_i] := true;
      v_answer[v_i] := v_after[v_o];
      v_tx[v_i] := v_tx[v_o];
      continue;
    end if;
    if v_spendable[v_s] < v_amounts[v_i] then
      v_allowed[v_i] := false;
      v_answer[v_i] := v_spendable[v_s];
      continue;
    end if;
    v_spendable[v_s] := v_spendable[v_s] - v_amounts[v_i];
    v_spent[v_s] := v_spent[v_s] + v_amounts[v_i];
    v_rows[v_s] := v_rows[v_s] + 1;
    v_after[v_i] := v_stored[v_s] - v_spent[v_s];
    v_allowed[v_i] := true;
    v_answer[v_i] := v_spendable[v_s];
    v_tx[v_i] := nextval(v_seq);  -- a new ledger row; ids in input order
    v_new[v_i] := true;
    v_n := v_n + 1;
    if v_group[v_i] is not null then
      v_owner[v_group[v_i]] := v_i;
    end if;
  end loop;

  -- 5. Write: the accounts (what they spent counted as undrawn), then the ledger rows in input order.
  if v_n > 0 then
    -- (due_at is set as it is so that the balance watch looks at the rows: creditkit.watch_balance)
    update creditkit.accounts a
       set balance = a.balance - t.spent, undrawn = a.undrawn + case when t.draw then 0 else t.spent end,
           version = a.version + t.n, due_at = a.due_at
      from unnest(v_ids, v_spent, v_rows, v_draw) t(id, spent, n, draw)
     where a.id = t.id and a.unit = p_unit and t.n > 0;
    perform creditkit.draw_down(t.id, p_unit, t.spent, p_now)
       from unnest(v_ids, v_spent, v_draw) t(id, spent, draw) where t.draw and t.spent > 0;
    insert into creditkit.ledger (id, account_id, kind, amount, balance_after, event, idempotency_key,
                                  cost_micros, metadata, created_at, unit)
    overriding system value
    select x.tx, x.account_id, 'consume', -x.amount, x.after, x.event, x.key, x.cost, coalesce(x.meta, '{}'::jsonb), p_now, p_unit
      from unnest(v_tx, v_accounts, v_amounts, v_after, v_events, v_keys, v_costs, v_metadata, v_new)
           with ordinality x(tx, account_id, amount, after, event, key, cost, meta, new, i)
     where x.new
     order by x.i;
    insert into creditkit.ledger_keys (account_id, idempotency_key, ledger_id)
    select x.account_id, x.key, x.tx
      from unnest(v_tx, v_accounts, v_keys, v_new) x(tx, account_id, key, new)
     where x.new and x.key is not null;
  end if;

  for v_i in 1 .. v_count loop
    ordinal := v_i;
    allowed := v_allowed[v_i];
    balance := v_answer[v_i];
    transaction_id := v_tx[v_i];
    return next;
  end loop;
end;
$$;
comment on function public.creditkit_consume_batch(jsonb, timestamptz, text) is
  'Server only. Spends p_unit (default credits) for 1 to 1000 usage events in one transaction: p_events is a JSON array of {account_id, amount, event?, idempotency_key?, metadata?, cost_micros?}, and each event is applied in order exactly as creditkit_consume would apply it in that unit, answering one row per event (ordinal from 1, allowed, balance, transaction_id). Any invalid event fails the whole call and changes nothing; a blocked event is allowed=false. Idempotent per event by key.';
revoke all on function public.creditkit_consume_batch(jsonb, timestamptz, text) from public, anon, authenticated;
grant execute on function public.creditkit_consume_batch(jsonb, timestamptz, text) to service_role;
