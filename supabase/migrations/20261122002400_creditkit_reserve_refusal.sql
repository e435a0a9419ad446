-- creditkit 0024: a refused reserve writes nothing and waits on nothing.
--
-- Same signature, answers, errors and order of checks as 0023. There, a reserve whose guarded
-- UPDATE matched no row (too little credit, the usual refusal) went the slow way: lock_account
-- took the account row lock, which assigns a transaction id, so every refusal waited behind any
-- call holding the row and then waited for a WAL flush at commit, for an answer that changed
-- nothing. A reserve is now refused the way creditkit_consume is (0015): read the account once,
-- without a lock, and if nothing is due, the spendable balance cannot cover the amount and the
-- key (if any) was never used for a hold of this account, that snapshot is the answer. Anything
-- else (an unknown account, something due, a key used before, or credit that arrived meanwhile)
-- still goes the slow way, which locks and answers as before.
--
-- Why the snapshot is a correct answer: a call that would change it (a grant, a release, a
-- settle) either committed before this read, which then sees it, or commits after it, and the
-- refusal is ordered before that call. A call with the same key that had already reserved when
-- this call's UPDATE came to the row made that UPDATE wait for it, so the read that follows sees
-- its hold and goes the slow way, which answers this call as its retry.

-- Security definer: writes holds and accounts; service_role only.
create or replace function public.creditkit_reserve(
  p_account_id uuid,
  p_amount bigint,
  p_ttl interval default interval '15 minutes',
  p_event text default null,
  p_idempotency_key text default null,
  p_metadata jsonb default null,
  p_now timestamptz default now(),
  out allowed boolean,
  out hold_id bigint,
  out balance bigint,
  out expires_at timestamptz)
returns record
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  v_metadata jsonb;
  v_spendable bigint;
  v_prior creditkit.holds;
  v_retry boolean := false;
  v_due_at timestamptz;
begin
  -- One test for everything a plain call does not have: a client role, an argument NULL or out
  -- of range, or an event, key or metadata to validate. Only then do the checks run, in their
  -- usual order.
  if current_setting('role', true) in ('anon', 'authenticated') or auth.role() in ('anon', 'authenticated')
     or p_account_id is null or p_amount is null or p_amount < 1 or p_amount > 9007199254740991 or p_now is null
     or p_ttl is null or p_ttl <= interval '0' or p_ttl > interval '7 days'
     or p_event is not null or p_idempotency_key is not null or p_metadata is not null then
    perform creditkit.assert_server_caller();
    perform creditkit.check_amount(p_amount);
    v_metadata := creditkit.check_request(p_idempotency_key, p_event, p_metadata, p_now);
    if p_ttl is null or p_ttl <= interval '0' or p_ttl > interval '7 days' then
      raise exception using errcode = 'CK006', message = 'invalid argument: ttl must be more than 0 and at most 7 days';
    end if;
  end if;

  -- Fast path: check and reserve in one statement, which locks the row only if it reserves.
  update creditkit.accounts a
     set held = a.held + p_amount, due_at = least(a.due_at, p_now + p_ttl)
   where a.id = p_account_id
     and a.balance - a.held >= p_amount
     and (a.due_at is null or a.due_at > p_now)
  returning a.balance - a.held into v_spendable;
  if found then
    if p_idempotency_key is not null then
      -- Under the row lock every earlier hold of this account with the key is visible. A retry
      -- undoes the reservation (due_at computed again) and is answered below.
      v_retry := exists (select from creditkit.holds h
                          where h.account_id = p_account_id and h.idempotency_key = p_idempotency_key);
      if v_retry then
        update creditkit.accounts a set held = a.held - p_amount where a.id = p_account_id;
        perform creditkit.refresh_due_at(p_account_id);
      end if;
    end if;
    if not v_retry then
      insert into creditkit.holds as h (account_id, amount, expires_at, event, idempotency_key, metadata, created_at)
      values (p_account_id, p_amount, p_now + p_ttl, p_event, p_idempotency_key, coalesce(v_metadata, '{}'::jsonb), p_now)
      returning true, h.id, v_spendable, h.expires_at into allowed, hold_id, balance, expires_at;
      return;
    end if;
  else
    -- Refused without a lock: read the account once (as creditkit_consume does). Nothing is
    -- written, not even a row lock; the hold fields stay NULL.
    select false, greatest(a.balance - a.held, 0), a.due_at into allowed, balance, v_due_at
      from creditkit.accounts a where a.id = p_account_id;
    if found and (v_due_at is null or v_due_at > p_now) and balance < p_amount then
      if p_idempotency_key is not null then
        perform from creditkit.holds h where h.account_id = p_account_id and h.idempotency_key = p_idempotency_key;
      end if;
      if p_idempotency_key is null or not found then
        return;
      end if;
    end if;
  end if;

  -- Slow path (unknown account, something due, a retry, or credit that arrived meanwhile): as in 0009.
  v_metadata := coalesce(v_metadata, '{}'::jsonb);
  v_spendable := creditkit.lock_account(p_account_id, p_now);

  if p_idempotency_key is not null then
    select h.* into v_prior from creditkit.holds h
     where h.account_id = p_account_id and h.idempotency_key = p_idempotency_key;
    if found then
      if v_prior.amount <> p_amount or v_prior.event is distinct from p_event or v_prior.metadata <> v_metadata then
        raise exception using errcode = 'CK004',
          message = format('idempotency conflict: key %L was already used for a different hold', p_idempotency_key),
          detail = jsonb_build_object('hold_id', v_prior.id)::text;
      end if;
      -- The first answer was "reserved"; once that hold is settled, released or expired a retry
      -- must not look like a fresh reservation (work would run with nothing held).
      if v_prior.status <> 'open' then
        raise exception using errcode = 'CK012',
          message = format('hold %s for key %L is already %s', v_prior.id, p_idempotency_key, v_prior.status),
          detail = jsonb_build_object('status', v_prior.status, 'hold_id', v_prior.id)::text;
      end if;
      allowed := true;
      hold_id := v_prior.id;
      expires_at := v_prior.expires_at;
      balance := v_spendable;
      return;
    end if;
  end if;

  if v_spendable < p_amount then
    allowed := false;
    balance := v_spendable;
    return;
  end if;
  expires_at := p_now + p_ttl;
  insert into creditkit.holds (account_id, amount, expires_at, event, idempotency_key, metadata, created_at)
  values (p_account_id, p_amount, expires_at, p_event, p_idempotency_key, v_metadata, p_now)
  returning id into hold_id;
  update creditkit.accounts a
     set held = a.held + p_amount, due_at = least(a.due_at, expires_at)
   where a.id = p_account_id;
  allowed := true;
  balance := v_spendable - p_amount;
end;
$$;
comment on function public.creditkit_reserve(uuid, bigint, interval, text, text, jsonb, timestamptz) is
  'Server only. Reserves credit before a long call: allowed=true with a hold id and the spendable balance left, or allowed=false (blocked, nothing reserved). The hold expires after p_ttl (default 15 minutes, at most 7 days) unless settled or released. Idempotent by key while the hold is open; a retry after it was settled, released or expired raises CK012.';
revoke all on function public.creditkit_reserve(uuid, bigint, interval, text, text, jsonb, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_reserve(uuid, bigint, interval, text, text, jsonb, timestamptz) to service_role;
