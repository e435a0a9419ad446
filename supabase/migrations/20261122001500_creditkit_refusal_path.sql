-- creditkit 0015: a refused consume costs half as much.
--
-- A refusal writes nothing and waits on nothing, so its cost is CPU in the function, and the
-- rejection storm (every account at zero) measures exactly that. Profiled after 0014 (perf on the
-- server, and the per-call function time from track_functions under pgbench), a refused
-- creditkit_consume took about 50 us of function time against 13 us for the R+L baseline's
-- failing call. Two things cost most of the difference:
--   * the refused path's test was one expression with a sub-query on the ledger, guarded by
--     `p_idempotency_key is null or not exists (...)`. Its plan depends on whether the key is
--     NULL, so the plan cache judged a custom plan cheaper than the generic one and planned that
--     statement again on every call (a quarter of the call's CPU). The ledger is now read in a
--     statement of its own, and only when a key is given;
--   * plpgsql prepares each expression again in every transaction (its simple-expression state
--     lives for one transaction), and a call is usually a transaction. The caller check (whose
--     `(select auth.role())` also made it a full query), the argument checks and the assignments
--     were a dozen such expressions; they are now one test up front, and the answers come back
--     from the statements' RETURNING and INTO lists.
-- Same signature, answers, errors and order of checks; the success path writes what it wrote
-- (one UPDATE of the account and one ledger INSERT). Measured with the same harness: a refusal
-- about 27 us of function time instead of 50.

-- Security definer: writes the kit's tables, which no client role may write; service_role only.
create or replace function public.creditkit_consume(
  p_account_id uuid,
  p_amount bigint,
  p_event text default null,
  p_idempotency_key text default null,
  p_metadata jsonb default null,
  p_cost_micros bigint default null,
  p_now timestamptz default now(),
  out allowed boolean,
  out balance bigint,
  out transaction_id bigint)
returns record
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  v_metadata jsonb;
  v_balance bigint;
  v_spendable bigint;
  v_due_at timestamptz;
  v_prior creditkit.ledger;
  v_entry creditkit.ledger;
begin
  -- One test for everything a plain call does not have: a client role (assert_server_caller's
  -- test, inlined), an argument NULL or out of range, or an event, key or metadata to validate.
  -- Only then do the checks run, in their usual order. (Every IF is an expression that plpgsql
  -- prepares again in each transaction, so the hot path keeps them few.)
  if current_setting('role', true) in ('anon', 'authenticated') or auth.role() in ('anon', 'authenticated')
     or p_account_id is null or p_amount is null or p_amount < 1 or p_amount > 9007199254740991 or p_now is null
     or p_cost_micros < 0 or p_cost_micros > 9007199254740991
     or p_event is not null or p_idempotency_key is not null or p_metadata is not null then
    -- (each check runs only if its part of the test above holds, so a call with a key, the usual
    -- case in apps, pays for check_request alone)
    if current_setting('role', true) in ('anon', 'authenticated') or auth.role() in ('anon', 'authenticated') then
      perform creditkit.assert_server_caller();
    end if;
    if p_amount is null or p_amount < 1 or p_amount > 9007199254740991
       or p_cost_micros < 0 or p_cost_micros > 9007199254740991 then
      perform creditkit.check_amount(p_amount);
      perform creditkit.check_money(p_cost_micros);
    end if;
    v_metadata := creditkit.check_request(p_idempotency_key, p_event, p_metadata, p_now);
    if p_account_id is null then
      raise exception using errcode = 'CK006', message = 'invalid argument: account id must not be NULL';
    end if;
  end if;

  -- Fast path: check and debit in one statement. It locks the row only if it debits; a row that
  -- fails the test (too little credit, or something due) is skipped without a lock. The buckets
  -- are not touched: `undrawn` counts the credit, and the next lock_account draws it.
  update creditkit.accounts a
     set balance = a.balance - p_amount,
         undrawn = a.undrawn + p_amount,
         version = a.version + 1
   where a.id = p_account_id
     and a.balance - a.held >= p_amount
     and (a.due_at is null or a.due_at > p_now)
  returning a.balance, a.balance - a.held into v_balance, v_spendable;

  if found then
    -- Every write of this account's ledger holds its row lock, which we now hold, so this read
    -- sees any earlier call with the key. A replay undoes the debit (the rare case pays).
    if p_idempotency_key is not null then
      v_prior := creditkit.find_replay(p_account_id, p_idempotency_key, 'consume', -p_amount, p_event, v_metadata,
                                       p_cost_micros, null);
      if v_prior.id is not null then
        update creditkit.accounts a
           set balance = a.balance + p_amount, undrawn = a.undrawn - p_amount, version = a.version - 1
         where a.id = p_account_id;
        allowed := true;
        balance := v_prior.balance_after;
        transaction_id := v_prior.id;
        return;
      end if;
    end if;
    insert into creditkit.ledger (account_id, kind, amount, balance_after, event, idempotency_key,
                                  cost_micros, metadata, created_at)
    values (p_account_id, 'consume', -p_amount, v_balance, p_event, p_idempotency_key,
            p_cost_micros, coalesce(v_metadata, '{}'::jsonb), p_now)
    returning true, v_spendable, id into allowed, balance, transaction_id;
    return;
  end if;

  -- Refused without a lock: read the account once. When nothing is due, the key (if any) was
  -- never used and the spendable balance cannot cover the amount, that snapshot is the answer:
  -- blocked, and nothing written, not even a row lock.
  select false, greatest(a.balance - a.held, 0), a.due_at into allowed, balance, v_due_at
    from creditkit.accounts a where a.id = p_account_id;
  if found and (v_due_at is null or v_due_at > p_now) and balance < p_amount then
    if p_idempotency_key is not null then
      perform from creditkit.ledger l where l.account_id = p_account_id and l.idempotency_key = p_idempotency_key;
    end if;
    if p_idempotency_key is null or not found then
      return;
    end if;
  end if;

  -- Slow path (unknown account, something due, a replay, or credit that arrived meanwhile).
  v_metadata := coalesce(v_metadata, '{}'::jsonb);
  v_spendable := creditkit.lock_account(p_account_id, p_now);
  v_prior := creditkit.find_replay(p_account_id, p_idempotency_key, 'consume', -p_amount, p_event, v_metadata,
                                   p_cost_micros, null);
  if v_prior.id is not null then
    allowed := true;
    balance := v_prior.balance_after;
    transaction_id := v_prior.id;
    return;
  end if;
  if v_spendable < p_amount then
    -- Blocked: a result, not an error, and no ledger row.
    allowed := false;
    balance := v_spendable;
    return;
  end if;
  perform creditkit.draw_down(p_account_id, p_amount, p_now);
  v_entry := creditkit.append_entry(p_account_id, 'consume', -p_amount, null, p_event, p_idempotency_key,
                                    v_metadata, p_now, null, p_cost_micros, null);
  allowed := true;
  balance := v_spendable - p_amount;
  transaction_id := v_entry.id;
end;
$$;
comment on function public.creditkit_consume(uuid, bigint, text, text, jsonb, bigint, timestamptz) is
  'Server only. Spends credit if the account can cover it: allowed=true with the new balance and ledger id, or allowed=false (blocked, nothing spent). Never below zero. Idempotent by key.';
revoke all on function public.creditkit_consume(uuid, bigint, text, text, jsonb, bigint, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_consume(uuid, bigint, text, text, jsonb, bigint, timestamptz) to service_role;
