-- creditkit notifications: an outbox of events (balance low, depleted and recovered, top-ups, plan
-- changes), written in the transaction that causes them, and their delivery to the operator's
-- endpoints, signed per the Standard Webhooks spec by the worker (runWorker, or the
-- creditkit-worker Edge Function), at least once, retried on a fixed schedule, dead after the last
-- attempt and replayable. docs/notifications.md has the event catalogue and the signature scheme.

-- Where the operator wants events delivered. The secret signs every delivery to the endpoint
-- ('whsec_' and base64, as Standard Webhooks has it); only the worker's claim reads it.
create table creditkit.webhook_endpoints (
  id text primary key
    constraint webhook_endpoints_id_format check (id ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
  url text not null
    constraint webhook_endpoints_url_format check (url ~ '^https?://[^\s]+$' and length(url) <= 2000),
  secret text not null
    constraint webhook_endpoints_secret_format check (secret ~ '^whsec_[A-Za-z0-9+/]{32,88}={0,2}$'),
  -- NULL: every event type.
  event_types text[]
    constraint webhook_endpoints_event_types_known check (event_types <@ array[
      'balance.low', 'balance.depleted', 'balance.recovered', 'topup.succeeded', 'topup.failed',
      'topup.action_required', 'plan.changed']::text[] and cardinality(event_types) > 0),
  enabled boolean not null default true,
  -- Why it is disabled: 'gone' when it answered 410, 'operator' when turned off.
  disabled_reason text,
  description text
    constraint webhook_endpoints_description_length check (length(description) <= 500),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table creditkit.webhook_endpoints is 'Endpoints that receive creditkit notifications, each with its signing secret and the event types it wants.';

-- One row per event, with a stable id (the webhook-id of every delivery of it). Kept for audit and
-- pruned by creditkit_prune_notifications once every delivery of it is final.
create table creditkit.notifications (
  id text not null default 'ntf_' || replace(gen_random_uuid()::text, '-', ''),
  type text not null,
  account_id uuid not null,
  unit text,
  payload jsonb not null,
  created_at timestamptz not null default now(),
  -- The order events were written in (those of one transaction share created_at).
  seq bigint generated always as identity,
  -- The id alone is unique (122 random bits); the key carries the account so that the outbox can
  -- live with the account's rows (on Citus: distributed by account, written on the account's node).
  constraint notifications_pkey primary key (id, account_id)
);
comment on table creditkit.notifications is 'The outbox: every notification event, written in the transaction that caused it.';
create index notifications_account on creditkit.notifications (account_id, created_at desc);
create index notifications_created on creditkit.notifications (created_at);

-- One delivery per event and endpoint subscribed to it when the event was written.
create table creditkit.deliveries (
  id bigint generated always as identity,
  -- The event's account (keys and lookups carry it, as for every per-account table).
  account_id uuid not null,
  notification_id text not null,
  endpoint_id text not null references creditkit.webhook_endpoints (id) on delete cascade,
  -- pending (due at next_attempt_at, NULL: now), delivering (claimed until claimed_until),
  -- delivered, dead (the last attempt failed) or canceled (the endpoint answered 410).
  status text not null default 'pending'
    constraint deliveries_status check (status in ('pending', 'delivering', 'delivered', 'dead', 'canceled')),
  attempts integer not null default 0,
  next_attempt_at timestamptz,
  claimed_until timestamptz,
  last_status integer,
  last_error text,
  delivered_at timestamptz,
  created_at timestamptz not null default now(),
  constraint deliveries_pkey primary key (id, account_id),
  constraint deliveries_notification foreign key (notification_id, account_id)
    references creditkit.notifications (id, account_id) on delete cascade,
  constraint deliveries_once unique (notification_id, account_id, endpoint_id)
);
comment on table creditkit.deliveries is 'Each event''s delivery to each endpoint: attempts, the last answer, and when it is due again.';
create index deliveries_due on creditkit.deliveries (coalesce(next_attempt_at, '-infinity'::timestamptz), id)
  where status = 'pending';
create index deliveries_claimed on creditkit.deliveries (claimed_until) where status = 'delivering';
create index deliveries_endpoint on creditkit.deliveries (endpoint_id, status);

alter table creditkit.webhook_endpoints enable row level security;
alter table creditkit.notifications enable row level security;
alter table creditkit.deliveries enable row level security;
revoke all on table creditkit.webhook_endpoints, creditkit.notifications, creditkit.deliveries
  from public, anon, authenticated, service_role;
grant select on table creditkit.notifications, creditkit.deliveries to service_role;

-- The delay after a failed attempt n (1-based) before attempt n + 1; the last entry is final: a
-- delivery whose attempt 8 fails is dead. Standard Webhooks' suggested schedule (about a day).
create or replace function creditkit.delivery_delays()
returns interval[]
language sql
immutable
set search_path = ''
as $$ select array['5 seconds', '5 minutes', '30 minutes', '2 hours', '5 hours', '10 hours', '10 hours']::interval[] $$;
comment on function creditkit.delivery_delays() is
  'The retry schedule: the wait after failed attempt n before attempt n+1; after attempt 8 a delivery is dead.';
revoke all on function creditkit.delivery_delays() from public, anon, authenticated, service_role;

-- Writes one event and a delivery for each enabled endpoint that wants its type. Called in the
-- transaction that causes the event, so the event exists exactly when its cause committed.
create or replace function creditkit.notify(p_type text, p_account_id uuid, p_unit text, p_data jsonb)
returns text
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_id text;
begin
  insert into creditkit.notifications (type, account_id, unit, payload)
  values (p_type, p_account_id, p_unit, p_data)
  returning id into v_id;
  insert into creditkit.deliveries (account_id, notification_id, endpoint_id)
  select p_account_id, v_id, e.id
    from creditkit.webhook_endpoints e
   where e.enabled and (e.event_types is null or p_type = any (e.event_types));
  return v_id;
end;
$$;
comment on function creditkit.notify(text, uuid, text, jsonb) is
  'Writes a notification event and its deliveries (one per enabled endpoint that wants the type); returns the event id.';
revoke all on function creditkit.notify(text, uuid, text, jsonb) from public, anon, authenticated, service_role;

-- The exact bytes every delivery of an event sends: Standard Webhooks' {id, type, timestamp, data}.
-- (It takes the columns, not the row: on Citus a row argument has the shard's type.)
create or replace function creditkit.notification_body(p_id text, p_type text, p_created_at timestamptz, p_payload jsonb)
returns text
language sql
immutable
set search_path = ''
as $$
  select jsonb_build_object(
           'id', p_id,
           'type', p_type,
           'timestamp', to_char(p_created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'data', p_payload)::text;
$$;
comment on function creditkit.notification_body(text, text, timestamptz, jsonb) is
  'The JSON body of a notification''s deliveries: {"id", "type", "timestamp", "data"}.';
revoke all on function creditkit.notification_body(text, text, timestamptz, jsonb) from public, anon, authenticated, service_role;

-- A plan change is an event wherever it comes from (creditkit_set_plan, Stripe's subscription
-- events): the subscription row is the one place both write.
create or replace function creditkit.notify_plan_change()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' or new.plan_id is distinct from old.plan_id or new.status is distinct from old.status then
    perform creditkit.notify('plan.changed', new.account_id, null, jsonb_build_object(
      'account_id', new.account_id, 'plan_id', new.plan_id,
      'previous_plan_id', case when tg_op = 'UPDATE' then old.plan_id end,
      'status', new.status,
      'previous_status', case when tg_op = 'UPDATE' then old.status end));
  end if;
  return null;
end;
$$;
comment on function creditkit.notify_plan_change() is
  'Trigger: a subscription that starts or changes plan or status writes a plan.changed event.';
revoke all on function creditkit.notify_plan_change() from public, anon, authenticated, service_role;

create trigger notify_plan_change
  after insert or update of plan_id, status on creditkit.subscriptions
  for each row execute function creditkit.notify_plan_change();

-- ---------------------------------------------------------------------------------------------
-- Endpoints (service_role only)
-- ---------------------------------------------------------------------------------------------

-- Security definer: writes the kit's tables; service_role only.
create or replace function public.creditkit_upsert_webhook_endpoint(
  p_id text,
  p_url text,
  p_event_types text[] default null,
  p_secret text default null,
  p_enabled boolean default true,
  p_description text default null,
  out id text,
  out url text,
  out event_types text[],
  out enabled boolean,
  out secret text,
  out disabled_reason text)
returns record
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_row creditkit.webhook_endpoints;
begin
  perform creditkit.assert_server_caller();
  if p_id is null or p_id !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' then
    raise exception using errcode = 'CK006', message = 'invalid argument: an endpoint id is 1-63 of a-z, 0-9, _ . - (starting with a letter or digit)';
  end if;
  if p_url is null or p_url !~ '^https?://[^\s]+$' or length(p_url) > 2000 then
    raise exception using errcode = 'CK006', message = 'invalid argument: the endpoint url must be an http(s) URL of at most 2000 characters';
  end if;
  if p_event_types is not null and (cardinality(p_event_types) = 0 or array_position(p_event_types, null) is not null
     or not p_event_types <@ array['balance.low', 'balance.depleted', 'balance.recovered', 'topup.succeeded',
                                   'topup.failed', 'topup.action_required', 'plan.changed']) then
    raise exception using errcode = 'CK006', message = 'invalid argument: event types must be NULL (all) or known types (docs/notifications.md)';
  end if;
  if p_secret is not null and p_secret !~ '^whsec_[A-Za-z0-9+/]{32,88}={0,2}$' then
    raise exception using errcode = 'CK006', message = 'invalid argument: a secret is whsec_ followed by the base64 of 24 to 64 bytes';
  end if;
  if p_enabled is null or length(p_description) > 500 then
    raise exception using errcode = 'CK006', message = 'invalid argument: enabled must not be NULL and a description is at most 500 characters';
  end if;
  insert into creditkit.webhook_endpoints as e (id, url, secret, event_types, enabled, disabled_reason, description)
  values (p_id, p_url,
          -- 32 random bytes from two v4 UUIDs (pg_strong_random)
          coalesce(p_secret, 'whsec_' || encode(decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'), 'base64')),
          p_event_types, p_enabled, case when not p_enabled then 'operator' end, p_description)
  on conflict on constraint webhook_endpoints_pkey do update
     set url = excluded.url, secret = coalesce(p_secret, e.secret), event_types = excluded.event_types,
         enabled = excluded.enabled, disabled_reason = case when excluded.enabled then null else coalesce(e.disabled_reason, 'operator') end,
         description = excluded.description, updated_at = excluded.updated_at
  returning e.* into v_row;
  id := v_row.id;
  url := v_row.url;
  event_types := v_row.event_types;
  enabled := v_row.enabled;
  secret := v_row.secret;
  disabled_reason := v_row.disabled_reason;
end;
$$;
comment on function public.creditkit_upsert_webhook_endpoint(text, text, text[], text, boolean, text) is
  'Server only. Creates or updates a notification endpoint: URL, event types (NULL: all), signing secret (generated when NULL on create, kept when NULL on update), enabled. Re-enabling an endpoint disabled by a 410 resumes its pending deliveries.';
revoke all on function public.creditkit_upsert_webhook_endpoint(text, text, text[], text, boolean, text) from public, anon, authenticated;
grant execute on function public.creditkit_upsert_webhook_endpoint(text, text, text[], text, boolean, text) to service_role;

-- Security definer: writes the kit's tables; service_role only. Its deliveries go with it.
create or replace function public.creditkit_delete_webhook_endpoint(p_id text)
returns bigint
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_deliveries bigint;
begin
  perform creditkit.assert_server_caller();
  select count(*) into v_deliveries from creditkit.deliveries d where d.endpoint_id = p_id;
  delete from creditkit.webhook_endpoints e where e.id = p_id;
  if not found then
    raise exception using errcode = 'CK017', message = format('unknown endpoint: %s', coalesce(p_id, 'NULL'));
  end if;
  return v_deliveries;
end;
$$;
comment on function public.creditkit_delete_webhook_endpoint(text) is
  'Server only. Deletes a notification endpoint and its deliveries (the events stay); returns how many deliveries went. CK017 for an unknown id.';
revoke all on function public.creditkit_delete_webhook_endpoint(text) from public, anon, authenticated;
grant execute on function public.creditkit_delete_webhook_endpoint(text) to service_role;

-- Security definer: reads a table service_role cannot (it holds the secrets, which this leaves out).
create or replace function public.creditkit_webhook_endpoints()
returns table (id text, url text, event_types text[], enabled boolean, disabled_reason text, description text,
               created_at timestamptz, pending bigint, delivered bigint, dead bigint)
language plpgsql
stable
security definer
set search_path = ''
set enable_seqscan = off
as $$
begin
  perform creditkit.assert_server_caller();
  return query
  with counts as (
    select d.endpoint_id,
           count(*) filter (where d.status in ('pending', 'delivering')) as pending,
           count(*) filter (where d.status = 'delivered') as delivered,
           count(*) filter (where d.status = 'dead') as dead
      from creditkit.deliveries d
     group by d.endpoint_id)
  select e.id, e.url, e.event_types, e.enabled, e.disabled_reason, e.description, e.created_at,
         coalesce(c.pending, 0), coalesce(c.delivered, 0), coalesce(c.dead, 0)
    from creditkit.webhook_endpoints e
    left join counts c on c.endpoint_id = e.id
   order by e.id;
end;
$$;
comment on function public.creditkit_webhook_endpoints() is
  'Server only. The notification endpoints (without their secrets) and how many deliveries each has pending, delivered and dead.';
revoke all on function public.creditkit_webhook_endpoints() from public, anon, authenticated;
grant execute on function public.creditkit_webhook_endpoints() to service_role;

-- Security definer: reads the outbox and its deliveries; service_role only.
create or replace function public.creditkit_notifications(
  p_account_id uuid default null,
  p_type text default null,
  p_limit integer default 50)
returns table (id text, type text, account_id uuid, unit text, payload jsonb, created_at timestamptz, deliveries jsonb)
language plpgsql
stable
security definer
set search_path = ''
set enable_seqscan = off
as $$
begin
  perform creditkit.assert_server_caller();
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception using errcode = 'CK006', message = 'invalid argument: limit must be between 1 and 1000';
  end if;
  return query
  select n.id, n.type, n.account_id, n.unit, n.payload, n.created_at,
         coalesce((select jsonb_agg(jsonb_build_object(
                    'id', d.id, 'endpoint_id', d.endpoint_id, 'status', d.status, 'attempts', d.attempts,
                    'last_status', d.last_status, 'last_error', d.last_error, 'next_attempt_at', d.next_attempt_at,
                    'delivered_at', d.delivered_at) order by d.id)
                     from creditkit.deliveries d where d.notification_id = n.id and d.account_id = n.account_id), '[]'::jsonb)
    from creditkit.notifications n
   where (p_account_id is null or n.account_id = p_account_id)
     and (p_type is null or n.type = p_type)
   order by n.created_at desc, n.seq desc
   limit p_limit;
end;
$$;
comment on function public.creditkit_notifications(uuid, text, integer) is
  'Server only. Notification events, newest first (optionally of one account or type), each with its deliveries and their status.';
revoke all on function public.creditkit_notifications(uuid, text, integer) from public, anon, authenticated;
grant execute on function public.creditkit_notifications(uuid, text, integer) to service_role;

-- Security definer: writes the kit's tables; service_role only.
create or replace function public.creditkit_replay_delivery(
  p_delivery_id bigint,
  p_now timestamptz default now(),
  out status text,
  out next_attempt_at timestamptz)
returns record
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_account uuid;
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_request(null, null, null, p_now);
  select d.account_id into v_account from creditkit.deliveries d where d.id = p_delivery_id;
  if not found then
    raise exception using errcode = 'CK018', message = format('unknown delivery: %s', p_delivery_id);
  end if;
  update creditkit.deliveries d
     set status = 'pending', next_attempt_at = p_now, claimed_until = null, attempts = 0
   where d.id = p_delivery_id and d.account_id = v_account and d.status in ('dead', 'canceled', 'delivered', 'pending')
  returning d.status, d.next_attempt_at into status, next_attempt_at;
  if not found then
    select d.status, d.next_attempt_at into status, next_attempt_at
      from creditkit.deliveries d where d.id = p_delivery_id and d.account_id = v_account;
  end if;
end;
$$;
comment on function public.creditkit_replay_delivery(bigint, timestamptz) is
  'Server only. Sends a delivery again from its first attempt (dead, canceled, delivered or waiting); one being sent now is left alone. CK018 for an unknown id.';
revoke all on function public.creditkit_replay_delivery(bigint, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_replay_delivery(bigint, timestamptz) to service_role;

-- Security definer: deletes from the kit's tables; service_role only.
create or replace function public.creditkit_prune_notifications(
  p_older_than interval default '30 days',
  p_now timestamptz default now())
returns bigint
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
as $$
declare
  v_deleted bigint;
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_request(null, null, null, p_now);
  if p_older_than is null or p_older_than < interval '1 hour' then
    raise exception using errcode = 'CK006', message = 'invalid argument: keep notifications at least 1 hour';
  end if;
  with gone as (
    delete from creditkit.notifications n
     where n.created_at < p_now - p_older_than
       and not exists (select from creditkit.deliveries d
                        where d.notification_id = n.id and d.account_id = n.account_id
                          and d.status in ('pending', 'delivering'))
    returning 1)
  select count(*) into v_deleted from gone;
  return v_deleted;
end;
$$;
comment on function public.creditkit_prune_notifications(interval, timestamptz) is
  'Server only. Deletes notification events older than p_older_than (default 30 days) whose deliveries are all final (delivered, dead or canceled); returns how many.';
revoke all on function public.creditkit_prune_notifications(interval, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_prune_notifications(interval, timestamptz) to service_role;

-- ---------------------------------------------------------------------------------------------
-- The worker's side of delivery (service_role only)
-- ---------------------------------------------------------------------------------------------

-- Security definer: hands the worker the secrets it signs with; service_role only. Claims due
-- deliveries (and ones whose worker's lease ran out): picks them without a lock, then locks each by
-- its account and id with SKIP LOCKED and checks it is still due, so workers never share one (and on
-- Citus each lock is on one shard). It picks four times the limit, so workers claiming at once pass
-- over what the others hold and still fill their limit.
create or replace function public.creditkit_worker_claim_deliveries(
  p_limit integer default 50,
  p_lease interval default '1 minute',
  p_now timestamptz default now())
returns table (delivery_id bigint, attempt integer, event_id text, endpoint_id text, url text, secret text,
               body text, "timestamp" bigint)
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  r record;
  v_delivery creditkit.deliveries;
  v_claimed integer := 0;
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_request(null, null, null, p_now);
  if p_limit is null or p_limit < 1 or p_limit > 1000 or p_lease is null or p_lease < interval '1 second' then
    raise exception using errcode = 'CK006', message = 'invalid argument: limit between 1 and 1000, lease at least 1 second';
  end if;
  for r in
    select d.id, d.account_id
      from creditkit.deliveries d
      join creditkit.webhook_endpoints e on e.id = d.endpoint_id and e.enabled
     where (d.status = 'pending' and coalesce(d.next_attempt_at, '-infinity') <= p_now)
        or (d.status = 'delivering' and d.claimed_until <= p_now)
     order by coalesce(d.next_attempt_at, '-infinity'), d.id
     limit p_limit * 4  -- room for the ones other workers hold
  loop
    exit when v_claimed >= p_limit;
    perform from creditkit.deliveries d
     where d.id = r.id and d.account_id = r.account_id
       and ((d.status = 'pending' and coalesce(d.next_attempt_at, '-infinity') <= p_now)
            or (d.status = 'delivering' and d.claimed_until <= p_now))
       for update skip locked;
    continue when not found;
    update creditkit.deliveries d
       -- a lease that ran out was an attempt whose answer never arrived: it counts
       set status = 'delivering', claimed_until = p_now + p_lease, attempts = d.attempts + 1
     where d.id = r.id and d.account_id = r.account_id
    returning d.* into v_delivery;
    v_claimed := v_claimed + 1;
    return query
    select v_delivery.id, v_delivery.attempts, n.id, e.id, e.url, e.secret,
           creditkit.notification_body(n.id, n.type, n.created_at, n.payload), extract(epoch from p_now)::bigint
      from creditkit.notifications n, creditkit.webhook_endpoints e
     where n.id = v_delivery.notification_id and n.account_id = v_delivery.account_id and e.id = v_delivery.endpoint_id;
  end loop;
end;
$$;
comment on function public.creditkit_worker_claim_deliveries(integer, interval, timestamptz) is
  'Server only (the worker). Claims up to p_limit due deliveries for p_lease: each with its attempt number, event id, URL, signing secret, the exact body and the webhook-timestamp to send.';
revoke all on function public.creditkit_worker_claim_deliveries(integer, interval, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_worker_claim_deliveries(integer, interval, timestamptz) to service_role;

-- Security definer: writes the kit's tables; service_role only.
create or replace function public.creditkit_worker_delivery_result(
  p_delivery_id bigint,
  p_attempt integer,
  p_status_code integer,
  p_error text default null,
  p_now timestamptz default now(),
  out status text,
  out next_attempt_at timestamptz)
returns record
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_delivery creditkit.deliveries;
  v_delays interval[] := creditkit.delivery_delays();
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_request(null, null, null, p_now);
  if p_status_code is not null and (p_status_code < 100 or p_status_code > 599) then
    raise exception using errcode = 'CK006', message = 'invalid argument: an HTTP status is between 100 and 599';
  end if;
  -- its account first (a read), then the row locked by account and id
  select d.* into v_delivery from creditkit.deliveries d where d.id = p_delivery_id;
  if not found then
    raise exception using errcode = 'CK018', message = format('unknown delivery: %s', p_delivery_id);
  end if;
  select d.* into v_delivery from creditkit.deliveries d
   where d.id = p_delivery_id and d.account_id = v_delivery.account_id for update;
  if v_delivery.status <> 'delivering' or v_delivery.attempts is distinct from p_attempt then
    -- an answer to an attempt that is no longer current (its lease ran out and another worker
    -- claimed it): the current attempt decides
    status := v_delivery.status;
    next_attempt_at := v_delivery.next_attempt_at;
    return;
  end if;
  if p_status_code between 200 and 299 then
    update creditkit.deliveries d
       set status = 'delivered', delivered_at = p_now, claimed_until = null, next_attempt_at = null,
           last_status = p_status_code, last_error = null
     where d.id = p_delivery_id and d.account_id = v_delivery.account_id;
    status := 'delivered';
  elsif p_status_code = 410 then
    -- the receiver says the endpoint is gone: stop sending to it until the operator re-enables it
    update creditkit.webhook_endpoints e set enabled = false, disabled_reason = 'gone', updated_at = p_now
     where e.id = v_delivery.endpoint_id;
    update creditkit.deliveries d
       set status = 'canceled', claimed_until = null, next_attempt_at = null, last_status = 410, last_error = left(p_error, 1000)
     where d.id = p_delivery_id and d.account_id = v_delivery.account_id;
    status := 'canceled';
  elsif v_delivery.attempts > cardinality(v_delays) then
    update creditkit.deliveries d
       set status = 'dead', claimed_until = null, next_attempt_at = null,
           last_status = p_status_code, last_error = left(p_error, 1000)
     where d.id = p_delivery_id and d.account_id = v_delivery.account_id;
    status := 'dead';
  else
    next_attempt_at := p_now + v_delays[v_delivery.attempts];
    update creditkit.deliveries d
       set status = 'pending', claimed_until = null, next_attempt_at = creditkit_worker_delivery_result.next_attempt_at,
           last_status = p_status_code, last_error = left(p_error, 1000)
     where d.id = p_delivery_id and d.account_id = v_delivery.account_id;
    status := 'pending';
  end if;
end;
$$;
comment on function public.creditkit_worker_delivery_result(bigint, integer, integer, text, timestamptz) is
  'Server only (the worker). Records the answer to a delivery attempt: 2xx delivered; 410 disables the endpoint; anything else (or no answer, p_status_code NULL) retries on the schedule, dead after attempt 8. An answer to an attempt that is no longer current changes nothing.';
revoke all on function public.creditkit_worker_delivery_result(bigint, integer, integer, text, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_worker_delivery_result(bigint, integer, integer, text, timestamptz) to service_role;
