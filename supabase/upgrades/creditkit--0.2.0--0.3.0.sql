-- creditkit 0.2.0 -> 0.3.0: balance alerts, auto top-up through Stripe, signed outbound notifications
--
-- Adds the notification outbox and its endpoints and deliveries, the balance watch (accounts gains
-- alert_at; the debit's fast path leaves a watched row's alert level to the slow path, whose writes
-- a deferred constraint trigger looks at), auto top-up (terms, settings, top-ups, the card on file
-- from the webhook), the Stripe events that feed them, and the worker's functions; replaces the
-- debit, the batch and the Stripe dispatcher, then applies the installer's settings (lock_timeout)
-- again to what it added and replaced.

insert into creditkit.error_codes (code, name, description) values
  ('CK016', 'auto_topup_unavailable', 'Auto top-up is not offered for the unit, or the account has no card on file that settles at once.'),
  ('CK017', 'unknown_endpoint',     'No notification endpoint with that id.'),
  ('CK018', 'unknown_topup_or_delivery', 'No top-up or notification delivery with that id.');

-- The spendable balance at or below which this row has something to do (a low-balance alert or
-- an auto top-up; creditkit.watch keeps it), or NULL when nothing is watched.
alter table creditkit.accounts add column alert_at bigint;

-- The installed version.
create or replace function creditkit.version()
returns text
language sql
immutable
set search_path = ''
as $$ select '0.3.0' $$;
comment on function creditkit.version() is 'The creditkit version installed in this database.';
revoke all on function creditkit.version() from public, anon, authenticated, service_role;
grant execute on function creditkit.version() to service_role;

-- Whether the caller may change the account's billing: turn auto top-up on (charges to its card)
-- or set its low-balance threshold. Default: the account is the caller's own. A team override of
-- can_access_account lets members read; override this one too to say who may spend (the owners,
-- say): create or replace it in a migration of yours. Created once, like can_access_account.
create or replace function creditkit.can_manage_billing(p_account_id uuid)
returns boolean
language sql
stable
security invoker
set search_path = ''
as $$
  select p_account_id is not null and p_account_id = (select auth.uid());
$$;
comment on function creditkit.can_manage_billing(uuid) is
  'True when the current caller may change the account''s billing (auto top-up, thresholds). Default: the account id is auth.uid(). Override for team accounts.';
revoke all on function creditkit.can_manage_billing(uuid) from public, anon, authenticated, service_role;
grant execute on function creditkit.can_manage_billing(uuid) to authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Notifications
-- ---------------------------------------------------------------------------------------------

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

-- ---------------------------------------------------------------------------------------------
-- Balance alerts and auto top-up
-- ---------------------------------------------------------------------------------------------

-- ---------------------------------------------------------------------------------------------
-- The customer's card on file, as the Stripe webhook reports it
-- ---------------------------------------------------------------------------------------------

-- Payment methods the webhook has seen (payment_method.attached / detached), for the card on file
-- shown to the customer and to refuse methods that settle days later.
create table creditkit.stripe_payment_methods (
  id text primary key
    constraint stripe_payment_methods_id_format check (id ~ '^(pm|card|src|ba)_[A-Za-z0-9_]+$' and length(id) <= 255),
  customer_id text,
  type text,
  brand text,
  last4 text,
  exp_month integer,
  exp_year integer,
  detached boolean not null default false,
  updated_at timestamptz not null default now()
);
comment on table creditkit.stripe_payment_methods is 'Stripe payment methods seen on the webhook: type and card details, and whether it was detached.';

-- Each Stripe customer's default payment method for off-session charges: set by a completed
-- setup (setup_intent.succeeded), a payment saved for later (setup_future_usage) or the
-- customer's invoice_settings; the newest event by (created, id) wins, in any delivery order.
create table creditkit.stripe_default_methods (
  customer_id text primary key,
  payment_method text,
  event_at timestamptz not null,
  event_id text not null
);
comment on table creditkit.stripe_default_methods is 'The payment method auto top-up charges for each Stripe customer, from the newest webhook event that named one.';

-- Methods that confirm days after the charge (bank debits, vouchers): a top-up must land at once,
-- so auto top-up refuses them.
create or replace function creditkit.settles_later(p_type text)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select p_type in ('sepa_debit', 'us_bank_account', 'bacs_debit', 'au_becs_debit', 'acss_debit', 'nz_bank_account',
                    'sofort', 'boleto', 'oxxo', 'konbini', 'customer_balance', 'multibanco', 'pay_by_bank');
$$;
comment on function creditkit.settles_later(text) is 'Whether a Stripe payment method type settles days after the charge (refused for auto top-up).';
revoke all on function creditkit.settles_later(text) from public, anon, authenticated, service_role;

-- The card an account's auto top-up would charge: its customer's default method, unless detached.
create or replace function creditkit.card_on_file(p_account_id uuid,
  out customer_id text, out payment_method text, out type text, out details jsonb)
returns record
language sql
stable
set search_path = ''
as $$
  select c.customer_id, d.payment_method, m.type,
         case when d.payment_method is not null then jsonb_build_object(
           'id', d.payment_method, 'type', m.type, 'brand', m.brand, 'last4', m.last4,
           'exp_month', m.exp_month, 'exp_year', m.exp_year) end
    from creditkit.stripe_customers c
    left join creditkit.stripe_default_methods d on d.customer_id = c.customer_id
    left join creditkit.stripe_payment_methods m on m.id = d.payment_method
   where c.account_id = p_account_id
     and (m.detached is null or not m.detached);
$$;
comment on function creditkit.card_on_file(uuid) is
  'The Stripe customer and default payment method (id, type, card details) of an account; payment_method NULL when none or detached.';
revoke all on function creditkit.card_on_file(uuid) from public, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Configuration: the operator's terms, and the thresholds
-- ---------------------------------------------------------------------------------------------

-- What the operator allows per unit: the price of an amount in the unit, the bounds of a top-up
-- and of a threshold, default monthly caps, the cooldown between two charges, and the link a
-- customer follows to confirm a payment their bank wants to authenticate.
create table creditkit.auto_topup_terms (
  unit text primary key references creditkit.units (id),
  currency text not null
    constraint auto_topup_terms_currency_format check (currency ~ '^[a-z]{3}$'),
  -- Smallest currency units (cents) per 1 of the unit; a charge is rounded up to a whole cent.
  unit_price numeric not null
    constraint auto_topup_terms_unit_price_range check (unit_price > 0 and unit_price <= 1000000),
  min_amount bigint not null
    constraint auto_topup_terms_min_amount_range check (min_amount between 1 and 9007199254740991),
  max_amount bigint not null,
  min_threshold bigint not null default 0
    constraint auto_topup_terms_min_threshold_range check (min_threshold between 0 and 9007199254740991),
  -- Per account and calendar month (UTC): money charged (cents) and number of charges; NULL: none.
  monthly_amount_cap bigint
    constraint auto_topup_terms_monthly_amount_cap_range check (monthly_amount_cap between 1 and 9007199254740991),
  monthly_count_cap integer
    constraint auto_topup_terms_monthly_count_cap_range check (monthly_count_cap >= 1),
  cooldown interval not null default '1 hour'
    constraint auto_topup_terms_cooldown_range check (cooldown >= interval '0'),
  -- {topup_id} and {payment_intent} are replaced; NULL: the event carries no link.
  action_url text
    constraint auto_topup_terms_action_url_format check (action_url ~ '^https?://[^\s]+$' and length(action_url) <= 2000),
  enabled boolean not null default true,
  updated_at timestamptz not null default now(),
  constraint auto_topup_terms_amounts check (max_amount between min_amount and 9007199254740991)
);
comment on table creditkit.auto_topup_terms is 'Per unit: whether customers may turn auto top-up on, its price, bounds, default caps, cooldown and action link.';

-- The operator's default low-balance threshold of a unit: absolute, or a percentage of the plan's
-- allowance of the unit. Hysteresis: how far above the threshold the balance must come back
-- before balance.recovered (default 10% of the threshold, at least 1).
create table creditkit.balance_alerts (
  unit text primary key references creditkit.units (id),
  threshold bigint
    constraint balance_alerts_threshold_range check (threshold between 0 and 9007199254740991),
  percent numeric
    constraint balance_alerts_percent_range check (percent > 0 and percent <= 100),
  hysteresis bigint
    constraint balance_alerts_hysteresis_range check (hysteresis between 1 and 9007199254740991),
  updated_at timestamptz not null default now(),
  constraint balance_alerts_one_threshold check (num_nonnulls(threshold, percent) = 1)
);
comment on table creditkit.balance_alerts is 'Default low-balance threshold per unit (absolute or % of the plan allowance) and its hysteresis.';

-- Per (account, unit): the account's own threshold (overrides the unit's), and which alerts have
-- fired since the balance was last above the threshold. Written under the account row's lock.
create table creditkit.account_alerts (
  account_id uuid not null,
  unit text not null references creditkit.units (id),
  threshold bigint
    constraint account_alerts_threshold_range check (threshold between 0 and 9007199254740991),
  percent numeric
    constraint account_alerts_percent_range check (percent > 0 and percent <= 100),
  low_fired boolean not null default false,
  depleted_fired boolean not null default false,
  updated_at timestamptz not null default now(),
  constraint account_alerts_pkey primary key (account_id, unit),
  constraint account_alerts_one_threshold check (num_nonnulls(threshold, percent) <= 1)
);
comment on table creditkit.account_alerts is 'Per account and unit: its own low-balance threshold, and the alerts fired since it was last above it.';

-- The customer's auto top-up of one unit. enabled is their choice; status is where it stands:
-- off, active, action_required (a charge needs them to authenticate; paused until it is paid or
-- the card changes) or disabled (three declines in a row, or no usable card, until the card
-- changes or they turn it on again). armed: a crossing may start a top-up (false from the
-- crossing until the balance is back above the threshold, so one crossing is one top-up).
create table creditkit.auto_topups (
  account_id uuid not null,
  unit text not null references creditkit.units (id),
  enabled boolean not null default false,
  status text not null default 'off'
    constraint auto_topups_status check (status in ('off', 'active', 'action_required', 'disabled')),
  status_reason text,
  threshold bigint not null
    constraint auto_topups_threshold_range check (threshold between 0 and 9007199254740991),
  -- How much: a fixed amount of the unit, up to a target balance, or a pack (exactly one).
  amount bigint
    constraint auto_topups_amount_range check (amount between 1 and 9007199254740991),
  target bigint
    constraint auto_topups_target_range check (target between 1 and 9007199254740991),
  pack_id text references creditkit.packs (id),
  -- The customer's own caps (at most the operator's); NULL: the operator's.
  monthly_amount_cap bigint
    constraint auto_topups_monthly_amount_cap_range check (monthly_amount_cap between 1 and 9007199254740991),
  monthly_count_cap integer
    constraint auto_topups_monthly_count_cap_range check (monthly_count_cap >= 1),
  failures integer not null default 0,
  armed boolean not null default true,
  updated_at timestamptz not null default now(),
  constraint auto_topups_pkey primary key (account_id, unit),
  constraint auto_topups_one_mode check (num_nonnulls(amount, target, pack_id) = 1),
  constraint auto_topups_target_above check (target > threshold)
);
comment on table creditkit.auto_topups is 'Auto top-up per account and unit: threshold, how much, caps, and its status (off, active, action_required, disabled).';

-- One row per top-up: pending (due at next_attempt_at; NULL: now) -> charging (a worker holds it
-- until claimed_until) -> processing (charged; the webhook grants) -> succeeded; or failed,
-- action_required (the customer must authenticate) or canceled. Its Stripe idempotency key is
-- 'creditkit-topup-<id>', so a worker that dies between charging and recording never charges twice.
create table creditkit.topups (
  id bigint generated always as identity,
  account_id uuid not null,
  unit text not null,
  status text not null default 'pending'
    constraint topups_status check (status in ('pending', 'charging', 'processing', 'succeeded', 'failed',
                                               'action_required', 'canceled')),
  amount bigint not null
    constraint topups_amount_range check (amount between 1 and 9007199254740991),
  charge_amount bigint not null
    constraint topups_charge_amount_range check (charge_amount between 1 and 9007199254740991),
  currency text not null,
  pack_id text,
  -- Claims of the current charge: the worker's answer names it, and a stale one is ignored.
  attempt integer not null default 0,
  next_attempt_at timestamptz,
  claimed_until timestamptz,
  -- When a worker first claimed it (the worker's clock): cooldown and monthly caps count it.
  charged_at timestamptz,
  customer_id text,
  payment_method text,
  payment_intent text,
  failure_code text,
  failure_message text,
  action_url text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  completed_at timestamptz,
  -- The id alone is unique; the key carries the account (the per-account rule: on Citus the top-ups
  -- live with the account's rows, and the watch writes them on the account's node).
  constraint topups_pkey primary key (id, account_id)
);
comment on table creditkit.topups is 'Each auto top-up: amount, charge, status (pending, charging, processing, succeeded, failed, action_required, canceled) and its PaymentIntent.';
-- Never a second while one is open.
create unique index topups_open on creditkit.topups (account_id, unit)
  where status in ('pending', 'charging', 'processing', 'action_required');
create index topups_due on creditkit.topups (coalesce(next_attempt_at, '-infinity'::timestamptz), id) where status = 'pending';
create index topups_claimed on creditkit.topups (claimed_until) where status = 'charging';
create index topups_account on creditkit.topups (account_id, unit, created_at desc, id desc);
create index topups_payment_intent on creditkit.topups (payment_intent) where payment_intent is not null;

alter table creditkit.stripe_payment_methods enable row level security;
alter table creditkit.stripe_default_methods enable row level security;
alter table creditkit.auto_topup_terms enable row level security;
alter table creditkit.balance_alerts enable row level security;
alter table creditkit.account_alerts enable row level security;
alter table creditkit.auto_topups enable row level security;
alter table creditkit.topups enable row level security;
revoke all on table creditkit.stripe_payment_methods, creditkit.stripe_default_methods, creditkit.auto_topup_terms,
  creditkit.balance_alerts, creditkit.account_alerts, creditkit.auto_topups, creditkit.topups
  from public, anon, authenticated, service_role;
grant select on table creditkit.stripe_payment_methods, creditkit.stripe_default_methods, creditkit.auto_topup_terms,
  creditkit.balance_alerts, creditkit.account_alerts, creditkit.auto_topups, creditkit.topups to service_role;

-- ---------------------------------------------------------------------------------------------
-- The watch: what a balance change fires
-- ---------------------------------------------------------------------------------------------

-- The low-balance threshold in force for an (account, unit): the account's own, else the unit's;
-- a percentage is of the allowance of the plan in force for the unit (NULL without one). watched:
-- whether anything is watched at all (a threshold, or auto top-up turned on).
create or replace function creditkit.low_level(p_account_id uuid, p_unit text,
  out threshold bigint, out hysteresis bigint, out source text, out watched boolean)
returns record
language plpgsql
stable
set search_path = ''
as $$
declare
  v_percent numeric;
  v_allowance bigint;
  v_unit creditkit.balance_alerts;
begin
  select a.threshold, a.percent, 'account' into threshold, v_percent, source
    from creditkit.account_alerts a
   where a.account_id = p_account_id and a.unit = p_unit and num_nonnulls(a.threshold, a.percent) = 1;
  select b.* into v_unit from creditkit.balance_alerts b where b.unit = p_unit;
  if found then
    hysteresis := v_unit.hysteresis;
    if source is null then
      threshold := v_unit.threshold;
      v_percent := v_unit.percent;
      source := 'unit';
    end if;
  end if;
  if v_percent is not null and threshold is null then
    v_allowance := case when p_unit = 'credits' then (creditkit.effective_plan(p_account_id)).allowance
                        else (creditkit.unit_terms(p_account_id, p_unit)).allowance end;
    threshold := nullif(floor(v_allowance * v_percent / 100), 0)::bigint;
  end if;
  hysteresis := coalesce(hysteresis, greatest(threshold / 10, 1), 1);
  watched := source is not null
             or exists (select from creditkit.auto_topups t where t.account_id = p_account_id and t.unit = p_unit and t.enabled);
end;
$$;
comment on function creditkit.low_level(uuid, text) is
  'The low-balance threshold in force for an (account, unit) (its own, else the unit''s; a percentage of the plan allowance), its hysteresis, where it comes from, and whether the row is watched at all.';
revoke all on function creditkit.low_level(uuid, text) from public, anon, authenticated, service_role;

-- What an (account, unit)'s top-ups charged in the calendar month (UTC) of p_at: the money and the
-- number of charges made or under way. The monthly caps count it; the customer sees it.
create or replace function creditkit.month_charges(p_account_id uuid, p_unit text, p_at timestamptz,
  out amount bigint, out n integer)
returns record
language plpgsql
stable
set search_path = ''
as $$
begin
  select coalesce(sum(p.charge_amount), 0)::bigint, count(*)::integer into amount, n
    from creditkit.topups p
   where p.account_id = p_account_id and p.unit = p_unit
     and p.status in ('charging', 'processing', 'succeeded')
     and p.charged_at >= date_trunc('month', p_at at time zone 'UTC') at time zone 'UTC';
end;
$$;
comment on function creditkit.month_charges(uuid, text, timestamptz) is
  'The money (cents) and number of charges an (account, unit)''s top-ups made or are making in the calendar month (UTC) of p_at.';
revoke all on function creditkit.month_charges(uuid, text, timestamptz) from public, anon, authenticated, service_role;

-- The terms of a top-up that starts now: how much of the unit, what it costs, in which currency.
-- NULL amount when there is nothing to buy (a target already reached, terms withdrawn).
create or replace function creditkit.topup_quote(p_auto creditkit.auto_topups, p_spendable bigint,
  out amount bigint, out charge_amount bigint, out currency text)
returns record
language plpgsql
stable
set search_path = ''
as $$
declare
  v_terms creditkit.auto_topup_terms;
  v_pack creditkit.packs;
begin
  select t.* into v_terms from creditkit.auto_topup_terms t where t.unit = p_auto.unit and t.enabled;
  if not found then
    return;
  end if;
  if p_auto.pack_id is not null then
    select k.* into v_pack from creditkit.packs k where k.id = p_auto.pack_id and k.active and k.unit = p_auto.unit;
    if found and v_pack.price_amount > 0 then
      amount := v_pack.credits;
      charge_amount := v_pack.price_amount;
      currency := v_pack.currency;
    end if;
    return;
  end if;
  amount := coalesce(p_auto.amount, p_auto.target - p_spendable);
  if amount < 1 then
    amount := null;
    return;
  end if;
  amount := least(greatest(amount, v_terms.min_amount), v_terms.max_amount);
  charge_amount := ceil(amount * v_terms.unit_price)::bigint;
  currency := v_terms.currency;
end;
$$;
comment on function creditkit.topup_quote(creditkit.auto_topups, bigint) is
  'What a top-up starting at this spendable balance buys and costs (a pack''s price, or the amount at the unit price, within the operator''s bounds).';
revoke all on function creditkit.topup_quote(creditkit.auto_topups, bigint) from public, anon, authenticated, service_role;

-- Compares an (account, unit)'s spendable balance with its thresholds and acts on each crossing:
-- balance.low at or below the threshold, balance.depleted at zero (each once until recovery),
-- balance.recovered back at threshold + hysteresis (or at the hysteresis, with no threshold), and
-- a pending top-up at or below the auto top-up threshold while armed. Then sets accounts.alert_at
-- to the highest level still armed (a sentinel below any balance when none is), or NULL when
-- nothing is watched. p_quiet: a new threshold of the operator's takes effect without events;
-- levels the balance is already below count as fired. The caller holds the row's lock (the
-- trigger: the transaction that changed it).
create or replace function creditkit.watch(p_account_id uuid, p_unit text, p_quiet boolean)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  c_none constant bigint := -4611686018427387904;  -- armed at no level: only a rise is looked at
  v_acc creditkit.accounts;
  v_spendable bigint;
  v_level record;
  v_state creditkit.account_alerts;
  v_auto creditkit.auto_topups;
  v_quote record;
  v_data jsonb;
  v_alert_at bigint;
begin
  select a.* into v_acc from creditkit.accounts a where a.id = p_account_id and a.unit = p_unit;
  if not found then
    return;
  end if;
  v_spendable := greatest(v_acc.balance - v_acc.held, 0);
  select * into v_level from creditkit.low_level(p_account_id, p_unit);
  if not v_level.watched then
    update creditkit.accounts a set alert_at = null
     where a.id = p_account_id and a.unit = p_unit and a.alert_at is not null;
    return;
  end if;

  select s.* into v_state from creditkit.account_alerts s where s.account_id = p_account_id and s.unit = p_unit;
  if not found then
    insert into creditkit.account_alerts (account_id, unit) values (p_account_id, p_unit)
    returning * into v_state;
  end if;
  v_data := jsonb_build_object('account_id', p_account_id, 'unit', p_unit, 'balance', v_acc.balance,
                               'held', v_acc.held, 'spendable', v_spendable, 'threshold', v_level.threshold);

  -- back up: recovered once clear of the threshold by the hysteresis
  if (v_state.low_fired or v_state.depleted_fired)
     and v_spendable >= coalesce(v_level.threshold, 0) + v_level.hysteresis then
    v_state.low_fired := false;
    v_state.depleted_fired := false;
    if not p_quiet then
      perform creditkit.notify('balance.recovered', p_account_id, p_unit, v_data);
    end if;
  end if;
  -- down: low, then depleted
  if v_level.threshold is not null and not v_state.low_fired and v_spendable <= v_level.threshold then
    v_state.low_fired := true;
    if not p_quiet then
      perform creditkit.notify('balance.low', p_account_id, p_unit, v_data);
    end if;
  end if;
  if not v_state.depleted_fired and v_spendable = 0 then
    v_state.depleted_fired := true;
    if not p_quiet then
      perform creditkit.notify('balance.depleted', p_account_id, p_unit, v_data);
    end if;
  end if;
  update creditkit.account_alerts s
     set low_fired = v_state.low_fired, depleted_fired = v_state.depleted_fired, updated_at = now()
   where s.account_id = p_account_id and s.unit = p_unit
     and (s.low_fired, s.depleted_fired) is distinct from (v_state.low_fired, v_state.depleted_fired);

  -- auto top-up: re-armed above its threshold with none open; one top-up per crossing
  select t.* into v_auto from creditkit.auto_topups t
   where t.account_id = p_account_id and t.unit = p_unit and t.enabled
     for update;
  if found and v_auto.status = 'active' then
    if not v_auto.armed and v_spendable > v_auto.threshold
       and not exists (select from creditkit.topups p
                        where p.account_id = p_account_id and p.unit = p_unit
                          and p.status in ('pending', 'charging', 'processing', 'action_required')) then
      v_auto.armed := true;
    end if;
    if v_auto.armed and v_spendable <= v_auto.threshold and not p_quiet then
      v_auto.armed := false;
      select * into v_quote from creditkit.topup_quote(v_auto, v_spendable);
      if v_quote.amount is not null then
        insert into creditkit.topups (account_id, unit, amount, charge_amount, currency, pack_id)
        values (p_account_id, p_unit, v_quote.amount, v_quote.charge_amount, v_quote.currency, v_auto.pack_id)
        on conflict (account_id, unit) where status in ('pending', 'charging', 'processing', 'action_required') do nothing;
      end if;
    elsif v_auto.armed and v_spendable <= v_auto.threshold then
      v_auto.armed := false;
    end if;
    update creditkit.auto_topups t set armed = v_auto.armed, updated_at = now()
     where t.account_id = p_account_id and t.unit = p_unit and t.armed <> v_auto.armed;
  end if;

  v_alert_at := greatest(case when v_level.threshold is not null and not v_state.low_fired then v_level.threshold end,
                         case when not v_state.depleted_fired then 0 end,
                         case when v_auto.status = 'active' and v_auto.armed then v_auto.threshold end);
  update creditkit.accounts a set alert_at = coalesce(v_alert_at, c_none)
   where a.id = p_account_id and a.unit = p_unit and a.alert_at is distinct from coalesce(v_alert_at, c_none);
end;
$$;
comment on function creditkit.watch(uuid, text, boolean) is
  'Acts on an (account, unit)''s thresholds: balance.low / depleted / recovered (with hysteresis), a pending top-up per crossing; sets accounts.alert_at to the next level to watch. p_quiet: no events (a new operator threshold).';
revoke all on function creditkit.watch(uuid, text, boolean) from public, anon, authenticated, service_role;

-- Security definer: it runs at commit, after the API function that changed the balance has
-- returned, as the caller (service_role has no rights on the kit's tables); and so it carries the
-- API's lock_timeout of its own.
create or replace function creditkit.watch_balance()
returns trigger
language plpgsql
security definer
set search_path = ''
set lock_timeout = '3s'
as $$
begin
  perform creditkit.watch(new.id, new.unit, false);
  return null;
end;
$$;
comment on function creditkit.watch_balance() is
  'Constraint trigger (deferred to commit): runs creditkit.watch for an (account, unit) whose balance reached its alert level or rose.';
revoke all on function creditkit.watch_balance() from public, anon, authenticated, service_role;

-- Queued only when a watched row's spendable balance reaches its alert level or rises; runs at
-- commit, once per queued change, on the row as the transaction leaves it. It looks at updates
-- that set due_at or held: every write under the lock point does (creditkit.append_entry, the
-- expiry through refresh_due_at, the holds, the batch), and the debit's fast path does neither: it
-- never reaches an alert level (its WHERE sends such a debit to the slow path), and leaving it out
-- keeps the trigger's WHEN, which PostgreSQL prepares anew for each statement, off the hot path.
create constraint trigger watch_balance
  after update of due_at, held on creditkit.accounts
  deferrable initially deferred
  for each row
  when (new.alert_at is not null
        and (new.balance - new.held <= new.alert_at or new.balance - new.held > old.balance - old.held))
  execute function creditkit.watch_balance();

-- A row that opens in a unit with a default threshold is watched from its first rise.
create or replace function creditkit.watch_new_row()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if exists (select from creditkit.balance_alerts b where b.unit = new.unit) then
    new.alert_at := 0;
  end if;
  return new;
end;
$$;
comment on function creditkit.watch_new_row() is
  'Trigger: an (account, unit) row opening in a unit with a default low-balance threshold is watched (alert_at set).';
revoke all on function creditkit.watch_new_row() from public, anon, authenticated, service_role;

create trigger watch_new_row
  before insert on creditkit.accounts
  for each row execute function creditkit.watch_new_row();

-- ---------------------------------------------------------------------------------------------
-- Top-up outcomes, from the worker or the webhook
-- ---------------------------------------------------------------------------------------------

-- A top-up's charge failed. authentication_required (or a charge that needs action): the top-up
-- waits for the customer (action_required, with a link) and auto top-up pauses; any other
-- failure: the top-up fails, the decline counts, the third in a row turns auto top-up off, and
-- otherwise it re-arms (the next charge waits for the cooldown). The caller holds the top-up's
-- row lock; this takes the account row's.
create or replace function creditkit.topup_failed(p_topup_id bigint, p_needs_action boolean, p_code text,
  p_message text, p_payment_intent text, p_reason text default null)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_topup creditkit.topups;
  v_auto creditkit.auto_topups;
  v_link text;
begin
  select p.* into v_topup from creditkit.topups p where p.id = p_topup_id;
  perform from creditkit.accounts a where a.id = v_topup.account_id and a.unit = v_topup.unit for update;
  if p_needs_action then
    select replace(replace(t.action_url, '{topup_id}', v_topup.id::text), '{payment_intent}', coalesce(p_payment_intent, ''))
      into v_link from creditkit.auto_topup_terms t where t.unit = v_topup.unit;
    update creditkit.topups p
       set status = 'action_required', payment_intent = coalesce(p_payment_intent, p.payment_intent),
           failure_code = left(p_code, 100), failure_message = left(p_message, 1000), action_url = v_link,
           claimed_until = null, updated_at = now()
     where p.id = p_topup_id and p.account_id = v_topup.account_id;
    update creditkit.auto_topups t
       set status = 'action_required', status_reason = 'authentication_required', updated_at = now()
     where t.account_id = v_topup.account_id and t.unit = v_topup.unit and t.status = 'active';
    perform creditkit.notify('topup.action_required', v_topup.account_id, v_topup.unit, jsonb_build_object(
      'account_id', v_topup.account_id, 'unit', v_topup.unit, 'topup_id', v_topup.id, 'amount', v_topup.amount,
      'charge_amount', v_topup.charge_amount, 'currency', v_topup.currency,
      'payment_intent', coalesce(p_payment_intent, v_topup.payment_intent), 'action_url', v_link,
      'failure_code', p_code));
    return;
  end if;
  update creditkit.topups p
     set status = 'failed', payment_intent = coalesce(p_payment_intent, p.payment_intent),
         failure_code = left(p_code, 100), failure_message = left(p_message, 1000),
         claimed_until = null, completed_at = now(), updated_at = now()
   where p.id = p_topup_id and p.account_id = v_topup.account_id;
  -- p_reason: NULL for a decline (counted); 'stripe_unavailable' (Stripe kept failing: not the
  -- card's fault, nothing changes); any other stops auto top-up until the card changes
  update creditkit.auto_topups t
     set failures = t.failures + case when p_reason is null then 1 else 0 end,
         status = case when p_reason <> 'stripe_unavailable' or p_reason is null and t.failures + 1 >= 3 then 'disabled'
                       else t.status end,
         status_reason = case when p_reason <> 'stripe_unavailable' then p_reason
                              when p_reason is null and t.failures + 1 >= 3 then 'failures' else t.status_reason end,
         armed = true, updated_at = now()
   where t.account_id = v_topup.account_id and t.unit = v_topup.unit
  returning t.* into v_auto;
  perform creditkit.notify('topup.failed', v_topup.account_id, v_topup.unit, jsonb_build_object(
    'account_id', v_topup.account_id, 'unit', v_topup.unit, 'topup_id', v_topup.id, 'amount', v_topup.amount,
    'charge_amount', v_topup.charge_amount, 'currency', v_topup.currency,
    'payment_intent', coalesce(p_payment_intent, v_topup.payment_intent),
    'failure_code', p_code, 'failure_message', p_message, 'failures', v_auto.failures,
    'auto_topup_status', v_auto.status));
  -- still below the threshold: the next top-up is pending now, charged after the cooldown
  perform creditkit.watch(v_topup.account_id, v_topup.unit, false);
end;
$$;
comment on function creditkit.topup_failed(bigint, boolean, text, text, text, text) is
  'Records a failed top-up charge: action_required (pauses auto top-up, link for the customer) or failed (counts the decline, the third disables auto top-up; otherwise re-armed).';
revoke all on function creditkit.topup_failed(bigint, boolean, text, text, text, text) from public, anon, authenticated, service_role;

-- The card on file changed: auto top-ups stopped for the card (declines, none usable, a payment
-- to authenticate) start again, and one already below its threshold tops up.
create or replace function creditkit.card_changed(p_customer_id text)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  r record;
begin
  for r in
    select t.account_id, t.unit
      from creditkit.stripe_customers c
      join creditkit.auto_topups t on t.account_id = c.account_id
     where c.customer_id = p_customer_id and t.enabled and t.status in ('disabled', 'action_required')
     order by t.unit = 'credits', t.unit
  loop
    perform from creditkit.accounts a where a.id = r.account_id and a.unit = r.unit for update;
    update creditkit.topups p set status = 'canceled', failure_code = 'card_changed', completed_at = now(), updated_at = now()
     where p.account_id = r.account_id and p.unit = r.unit and p.status = 'action_required';
    update creditkit.auto_topups t
       set status = 'active', status_reason = null, failures = 0, armed = true, updated_at = now()
     where t.account_id = r.account_id and t.unit = r.unit;
    perform creditkit.watch(r.account_id, r.unit, false);
  end loop;
end;
$$;
comment on function creditkit.card_changed(text) is
  'A customer''s card on file changed: their auto top-ups paused or disabled for the card start again.';
revoke all on function creditkit.card_changed(text) from public, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Stripe events: the card on file, and a top-up's PaymentIntent
-- ---------------------------------------------------------------------------------------------

-- Records a customer's default payment method from an event, if the event is the newest to name
-- one (so any delivery order ends with the same card).
create or replace function creditkit.stripe_set_default_method(p_customer_id text, p_payment_method text,
  p_event jsonb)
returns text
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_at timestamptz := creditkit.stripe_time(p_event -> 'created');
  v_id text := p_event ->> 'id';
  v_before text;
begin
  if p_customer_id !~ '^cus_[A-Za-z0-9]+$' or p_payment_method !~ '^(pm|card|src|ba)_[A-Za-z0-9_]+$' then
    return 'no customer or payment method to record';
  end if;
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('creditkit.stripe_customer:' || p_customer_id, 0));
  select d.payment_method into v_before from creditkit.stripe_default_methods d where d.customer_id = p_customer_id;
  insert into creditkit.stripe_default_methods as d (customer_id, payment_method, event_at, event_id)
  values (p_customer_id, p_payment_method, v_at, v_id)
  on conflict (customer_id) do update
     set payment_method = excluded.payment_method, event_at = excluded.event_at, event_id = excluded.event_id
   where (d.event_at, d.event_id) < (excluded.event_at, excluded.event_id);
  insert into creditkit.stripe_payment_methods (id, customer_id) values (p_payment_method, p_customer_id)
  on conflict (id) do nothing;
  if v_before is distinct from (select d.payment_method from creditkit.stripe_default_methods d where d.customer_id = p_customer_id) then
    perform creditkit.card_changed(p_customer_id);
    return format('card on file of %s is %s', p_customer_id, p_payment_method);
  end if;
  return 'card on file unchanged';
end;
$$;
comment on function creditkit.stripe_set_default_method(text, text, jsonb) is
  'Records a Stripe customer''s default payment method from a webhook event, newest event wins; restarts auto top-ups stopped for the card.';
revoke all on function creditkit.stripe_set_default_method(text, text, jsonb) from public, anon, authenticated, service_role;

-- payment_method.attached / detached: the method's type and card details, and whether it can
-- still be charged.
create or replace function creditkit.stripe_payment_method_event(p_event jsonb, p_object jsonb, p_now timestamptz,
  out account_id uuid, out effect text)
returns record
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_id text := p_object ->> 'id';
  v_detached boolean := p_event ->> 'type' = 'payment_method.detached';
  v_customer text := coalesce(creditkit.stripe_id(p_object -> 'customer'),
                              creditkit.stripe_id(p_event #> '{data,previous_attributes,customer}'));
begin
  if v_id !~ '^(pm|card|src|ba)_[A-Za-z0-9_]+$' then
    perform creditkit.stripe_dead('invalid_event', 'payment method without an id');
  end if;
  insert into creditkit.stripe_payment_methods as m (id, customer_id, type, brand, last4, exp_month, exp_year, detached, updated_at)
  values (v_id, v_customer, p_object ->> 'type', p_object #>> '{card,brand}', p_object #>> '{card,last4}',
          (p_object #>> '{card,exp_month}')::integer, (p_object #>> '{card,exp_year}')::integer, v_detached, p_now)
  on conflict (id) do update
     set customer_id = coalesce(excluded.customer_id, m.customer_id), type = coalesce(excluded.type, m.type),
         brand = coalesce(excluded.brand, m.brand), last4 = coalesce(excluded.last4, m.last4),
         exp_month = coalesce(excluded.exp_month, m.exp_month), exp_year = coalesce(excluded.exp_year, m.exp_year),
         -- detached is final: Stripe never attaches a detached method again
         detached = m.detached or excluded.detached, updated_at = p_now;
  select c.account_id into account_id from creditkit.stripe_customers c where c.customer_id = v_customer;
  effect := format('payment method %s %s', v_id, case when v_detached then 'detached' else 'recorded' end);
end;
$$;
comment on function creditkit.stripe_payment_method_event(jsonb, jsonb, timestamptz) is
  'Applies payment_method.attached / detached: records the method''s type and card details; a detached method is never charged.';
revoke all on function creditkit.stripe_payment_method_event(jsonb, jsonb, timestamptz) from public, anon, authenticated, service_role;

-- setup_intent.succeeded, customer.updated, checkout.session.completed in setup mode, and a
-- payment_intent.succeeded that is not a top-up's: the card a customer saved for later.
create or replace function creditkit.stripe_card_event(p_event jsonb, p_object jsonb, p_now timestamptz,
  out account_id uuid, out effect text)
returns record
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_type text := p_event ->> 'type';
  v_customer text := creditkit.stripe_id(p_object -> 'customer');
  v_method text;
begin
  if v_type = 'checkout.session.completed' then
    -- setup mode: link the customer; setup_intent.succeeded names the card
    account_id := coalesce(creditkit.stripe_uuid(p_object -> 'metadata' ->> 'account_id'),
                           creditkit.stripe_uuid(p_object ->> 'client_reference_id'));
    if account_id is not null and v_customer is not null then
      perform creditkit.stripe_lock_account(account_id, p_now);
      perform creditkit.stripe_link_customer(account_id, v_customer, p_now);
    end if;
    effect := 'card setup completed; setup_intent.succeeded records the card';
    return;
  end if;
  if v_type = 'customer.updated' then
    v_customer := p_object ->> 'id';
    v_method := creditkit.stripe_id(p_object #> '{invoice_settings,default_payment_method}');
  else  -- payment_intent.succeeded saved for off-session use, or setup_intent.succeeded
    v_method := creditkit.stripe_id(p_object -> 'payment_method');
  end if;
  if v_method is null then
    effect := 'no payment method named; nothing to record';
    return;
  end if;
  if jsonb_typeof(p_object -> 'payment_method') = 'object' then
    perform creditkit.stripe_payment_method_event(p_event, p_object -> 'payment_method', p_now);
  end if;
  select c.account_id into account_id from creditkit.stripe_customers c where c.customer_id = v_customer;
  effect := creditkit.stripe_set_default_method(v_customer, v_method, p_event);
end;
$$;
comment on function creditkit.stripe_card_event(jsonb, jsonb, timestamptz) is
  'Applies the events that save a card for off-session charges: setup_intent.succeeded, customer.updated, a payment with setup_future_usage, a setup-mode checkout.';
revoke all on function creditkit.stripe_card_event(jsonb, jsonb, timestamptz) from public, anon, authenticated, service_role;

-- payment_intent.succeeded / payment_failed of a top-up (metadata.creditkit_topup_id): success
-- grants the top-up once, as a pack payment (refunds and disputes then claw it back the same way);
-- failure is recorded unless the worker already recorded this charge's outcome.
create or replace function creditkit.stripe_topup_payment(p_event jsonb, p_object jsonb, p_now timestamptz,
  out account_id uuid, out effect text)
returns record
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_pi text := p_object ->> 'id';
  v_topup creditkit.topups;
  v_payment bigint;
  v_error jsonb := p_object -> 'last_payment_error';
  v_auto creditkit.auto_topups;
begin
  if coalesce(p_object #>> '{metadata,creditkit_topup_id}', '') !~ '^[0-9]{1,18}$' or v_pi !~ '^pi_[A-Za-z0-9_]+$' then
    perform creditkit.stripe_dead('invalid_event', 'top-up payment without a payment intent id or a numeric metadata.creditkit_topup_id');
  end if;
  perform creditkit.stripe_lock_payment(array[v_pi]);
  select p.* into v_topup from creditkit.topups p where p.id = (p_object #>> '{metadata,creditkit_topup_id}')::bigint;
  if not found or v_topup.account_id::text is distinct from p_object #>> '{metadata,creditkit_account_id}' then
    perform creditkit.stripe_dead('unknown_topup', format('no top-up %s of account %s',
      p_object #>> '{metadata,creditkit_topup_id}', coalesce(p_object #>> '{metadata,creditkit_account_id}', 'NULL')));
  end if;
  account_id := v_topup.account_id;
  -- the account's rows first (every unit, in the kit's order), then the top-up's
  perform creditkit.stripe_lock_account(v_topup.account_id, p_now);
  select p.* into v_topup from creditkit.topups p where p.id = v_topup.id and p.account_id = v_topup.account_id for update;

  if p_event ->> 'type' = 'payment_intent.payment_failed' then
    if v_topup.status in ('charging', 'processing') and (v_topup.payment_intent is null or v_topup.payment_intent = v_pi) then
      perform creditkit.topup_failed(v_topup.id, v_error ->> 'code' = 'authentication_required',
                                     coalesce(v_error ->> 'decline_code', v_error ->> 'code', 'payment_failed'),
                                     v_error ->> 'message', v_pi);
      effect := format('top-up %s: %s', v_topup.id, coalesce(v_error ->> 'code', 'payment failed'));
    else
      effect := format('top-up %s is %s; nothing to change', v_topup.id, v_topup.status);
    end if;
    return;
  end if;

  -- succeeded: the payment, keyed by its payment intent, is granted once (as a pack's)
  v_payment := creditkit.stripe_payment(v_pi, null, null);
  update creditkit.stripe_payments p
     set account_id = coalesce(p.account_id, v_topup.account_id), pack_id = coalesce(p.pack_id, v_topup.pack_id),
         credits = coalesce(p.credits, v_topup.amount),
         unit = case when p.credits is null then v_topup.unit else p.unit end,
         amount_paid = coalesce(p.amount_paid, (p_object ->> 'amount_received')::bigint, v_topup.charge_amount),
         currency = coalesce(p.currency, p_object ->> 'currency', v_topup.currency),
         state = 'paid', updated_at = p_now
   where p.id = v_payment;
  effect := creditkit.stripe_settle_payment(v_payment, p_now);
  if v_topup.status <> 'succeeded' then
    update creditkit.topups p
       set status = 'succeeded', payment_intent = v_pi, claimed_until = null, completed_at = now(), updated_at = now(),
           failure_code = null, failure_message = null
     where p.id = v_topup.id and p.account_id = v_topup.account_id;
    update creditkit.auto_topups t
       set failures = 0,
           status = case when t.status = 'action_required' then 'active' else t.status end,
           status_reason = case when t.status = 'action_required' then null else t.status_reason end,
           updated_at = now()
     where t.account_id = v_topup.account_id and t.unit = v_topup.unit
    returning t.* into v_auto;
    perform creditkit.notify('topup.succeeded', v_topup.account_id, v_topup.unit, jsonb_build_object(
      'account_id', v_topup.account_id, 'unit', v_topup.unit, 'topup_id', v_topup.id, 'amount', v_topup.amount,
      'charge_amount', v_topup.charge_amount, 'currency', v_topup.currency, 'payment_intent', v_pi,
      'balance', creditkit.spendable(v_topup.account_id, v_topup.unit)));
    effect := format('top-up %s succeeded; %s', v_topup.id, effect);
  end if;
end;
$$;
comment on function creditkit.stripe_topup_payment(jsonb, jsonb, timestamptz) is
  'Applies payment_intent.succeeded / payment_failed of a top-up: grants it once (as a pack payment), or records the failure.';
revoke all on function creditkit.stripe_topup_payment(jsonb, jsonb, timestamptz) from public, anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Server API: terms and thresholds (service_role), and the customer's reads and settings
-- ---------------------------------------------------------------------------------------------

-- Security definer: writes the kit's tables; service_role only.
create or replace function public.creditkit_set_auto_topup_terms(
  p_unit text,
  p_currency text,
  p_unit_price numeric,
  p_min_amount bigint,
  p_max_amount bigint,
  p_min_threshold bigint default 0,
  p_monthly_amount_cap bigint default null,
  p_monthly_count_cap integer default null,
  p_cooldown interval default '1 hour',
  p_action_url text default null,
  p_enabled boolean default true)
returns setof creditkit.auto_topup_terms
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_unit(p_unit);
  perform creditkit.check_amount(p_min_amount);
  perform creditkit.check_amount(p_max_amount);
  if p_max_amount < p_min_amount then
    raise exception using errcode = 'CK001', message = 'invalid amount: max_amount is below min_amount';
  end if;
  if p_monthly_amount_cap is not null then
    perform creditkit.check_amount(p_monthly_amount_cap);
  end if;
  if p_currency is null or p_currency !~ '^[a-z]{3}$' then
    raise exception using errcode = 'CK006', message = 'invalid argument: currency is a lowercase ISO code (usd)';
  end if;
  if p_unit_price is null or p_unit_price <= 0 or p_unit_price > 1000000 then
    raise exception using errcode = 'CK006', message = 'invalid argument: unit_price is the price of 1 of the unit in cents, above 0 and at most 1000000';
  end if;
  if ceil(p_max_amount * p_unit_price) > 9007199254740991 then
    raise exception using errcode = 'CK001', message = 'invalid amount: max_amount at unit_price would cost more than 9007199254740991';
  end if;
  if p_min_threshold is null or p_min_threshold < 0 or p_min_threshold > 9007199254740991
     or p_monthly_count_cap < 1 or p_cooldown is null or p_cooldown < interval '0' or p_enabled is null then
    raise exception using errcode = 'CK006', message = 'invalid argument: min_threshold >= 0, monthly_count_cap >= 1, cooldown >= 0 and enabled are required';
  end if;
  if p_action_url is not null and (p_action_url !~ '^https?://[^\s]+$' or length(p_action_url) > 2000) then
    raise exception using errcode = 'CK006', message = 'invalid argument: action_url must be an http(s) URL';
  end if;
  return query
  insert into creditkit.auto_topup_terms as t (unit, currency, unit_price, min_amount, max_amount, min_threshold,
                                               monthly_amount_cap, monthly_count_cap, cooldown, action_url, enabled)
  values (p_unit, p_currency, p_unit_price, p_min_amount, p_max_amount, p_min_threshold, p_monthly_amount_cap,
          p_monthly_count_cap, p_cooldown, p_action_url, p_enabled)
  on conflict (unit) do update
     set currency = excluded.currency, unit_price = excluded.unit_price, min_amount = excluded.min_amount,
         max_amount = excluded.max_amount, min_threshold = excluded.min_threshold,
         monthly_amount_cap = excluded.monthly_amount_cap, monthly_count_cap = excluded.monthly_count_cap,
         cooldown = excluded.cooldown, action_url = excluded.action_url, enabled = excluded.enabled, updated_at = excluded.updated_at
  returning t.*;
end;
$$;
comment on function public.creditkit_set_auto_topup_terms(text, text, numeric, bigint, bigint, bigint, bigint, integer, interval, text, boolean) is
  'Server only. What auto top-up of a unit allows: currency and price of 1 of the unit (cents), amount bounds, the lowest threshold, default monthly caps (cents, charges), cooldown between charges, the link for a payment to authenticate ({topup_id}, {payment_intent}), enabled.';
revoke all on function public.creditkit_set_auto_topup_terms(text, text, numeric, bigint, bigint, bigint, bigint, integer, interval, text, boolean) from public, anon, authenticated;
grant execute on function public.creditkit_set_auto_topup_terms(text, text, numeric, bigint, bigint, bigint, bigint, integer, interval, text, boolean) to service_role;

-- Security definer: customers read the terms without a grant on the table.
create or replace function public.creditkit_auto_topup_terms()
returns setof creditkit.auto_topup_terms
language sql
stable
security definer
set search_path = ''
set enable_seqscan = off
as $$
  select t.* from creditkit.auto_topup_terms t order by t.unit;
$$;
comment on function public.creditkit_auto_topup_terms() is
  'Signed-in users and the server. The auto top-up terms of each unit (price, bounds, caps, cooldown).';
revoke all on function public.creditkit_auto_topup_terms() from public, anon, authenticated, service_role;
grant execute on function public.creditkit_auto_topup_terms() to authenticated, service_role;

-- A low-balance threshold's arguments: absolute (0 to 2^53-1) or a percentage (0 < p <= 100), not both.
create or replace function creditkit.check_threshold(p_threshold bigint, p_percent numeric)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_threshold < 0 or p_threshold > 9007199254740991 then
    raise exception using errcode = 'CK001', message = 'invalid amount: a threshold is between 0 and 9007199254740991';
  end if;
  if p_threshold is not null and p_percent is not null or p_percent <= 0 or p_percent > 100 then
    raise exception using errcode = 'CK006', message = 'invalid argument: a threshold is absolute or a percentage (0 < p <= 100), not both';
  end if;
end;
$$;
comment on function creditkit.check_threshold(bigint, numeric) is
  'Validates a low-balance threshold: absolute (0 to 2^53-1, CK001) or a percentage (0 < p <= 100), not both (CK006).';
revoke all on function creditkit.check_threshold(bigint, numeric) from public, anon, authenticated, service_role;

-- Security definer: writes the kit's tables; service_role only. A new default takes effect on
-- every row of the unit quietly: rows already below it count as low, without an event.
create or replace function public.creditkit_set_balance_alert(
  p_unit text,
  p_threshold bigint,
  p_percent numeric default null,
  p_hysteresis bigint default null)
returns setof creditkit.balance_alerts
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
as $$
declare
  r record;
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_unit(p_unit);
  perform creditkit.check_threshold(p_threshold, p_percent);
  if p_hysteresis is not null then
    perform creditkit.check_amount(p_hysteresis);
  end if;
  if p_threshold is null and p_percent is null then
    delete from creditkit.balance_alerts b where b.unit = p_unit;
  else
    insert into creditkit.balance_alerts as b (unit, threshold, percent, hysteresis)
    values (p_unit, p_threshold, p_percent, p_hysteresis)
    on conflict (unit) do update
       set threshold = excluded.threshold, percent = excluded.percent, hysteresis = excluded.hysteresis, updated_at = excluded.updated_at;
  end if;
  for r in select a.id from creditkit.accounts a where a.unit = p_unit order by a.id loop
    perform from creditkit.accounts a where a.id = r.id and a.unit = p_unit for update;
    perform creditkit.watch(r.id, p_unit, true);
  end loop;
  return query select b.* from creditkit.balance_alerts b where b.unit = p_unit;
end;
$$;
comment on function public.creditkit_set_balance_alert(text, bigint, numeric, bigint) is
  'Server only. The default low-balance threshold of a unit (absolute, or p_percent of the plan allowance) and its hysteresis; both NULL removes it. Applies to every account at once, without events for those already below it.';
revoke all on function public.creditkit_set_balance_alert(text, bigint, numeric, bigint) from public, anon, authenticated;
grant execute on function public.creditkit_set_balance_alert(text, bigint, numeric, bigint) to service_role;

-- The row the balance-alert reads answer.
create or replace function creditkit.balance_alert_of(p_account_id uuid, p_unit text,
  out account_id uuid, out unit text, out threshold bigint, out source text, out state text, out spendable bigint)
returns record
language plpgsql
stable
set search_path = ''
as $$
declare
  v_level record;
  v_state creditkit.account_alerts;
begin
  account_id := p_account_id;
  unit := p_unit;
  select * into v_level from creditkit.low_level(p_account_id, p_unit);
  threshold := v_level.threshold;
  source := case when v_level.source is not null then v_level.source end;
  select s.* into v_state from creditkit.account_alerts s where s.account_id = p_account_id and s.unit = p_unit;
  state := case when v_state.depleted_fired then 'depleted' when v_state.low_fired then 'low' else 'ok' end;
  select b.balance into spendable from creditkit.live_buckets(p_account_id, p_unit, now()) b;
end;
$$;
comment on function creditkit.balance_alert_of(uuid, text) is
  'An (account, unit)''s low-balance threshold in force, where it comes from, its state (ok, low, depleted) and spendable balance.';
revoke all on function creditkit.balance_alert_of(uuid, text) from public, anon, authenticated, service_role;

-- The account a signed-in caller asked to change the billing of (default: their own): one they may
-- read (creditkit.caller_account) and manage (creditkit.can_manage_billing); CK005 otherwise.
create or replace function creditkit.billing_account(p_account_id uuid)
returns uuid
language plpgsql
stable
set search_path = ''
as $$
declare
  v_account_id uuid := creditkit.caller_account(p_account_id);
begin
  if not creditkit.can_manage_billing(v_account_id) then
    raise exception using errcode = 'CK005', message = 'not allowed: you may not change the billing of that account';
  end if;
  return v_account_id;
end;
$$;
comment on function creditkit.billing_account(uuid) is
  'The account a signed-in caller may change the billing of (default: their own); CK005 unless can_manage_billing allows it.';
revoke all on function creditkit.billing_account(uuid) from public, anon, authenticated, service_role;

-- Locks an (account, unit) row for a setting, opening it for a known account that has none in the
-- unit yet (a setting needs the row to watch). CK003 for an unknown account, CK015 for a unit that
-- is not metered.
create or replace function creditkit.lock_for_setting(p_account_id uuid, p_unit text, p_now timestamptz)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
  perform creditkit.check_unit(p_unit);
  if not creditkit.unit_row_ready(p_account_id, p_unit, p_now) then
    -- a known account that holds nothing in the unit yet: open its row so the setting has one
    perform creditkit.lock_plan(p_account_id, false);
    insert into creditkit.accounts (id, unit, created_at) values (p_account_id, p_unit, p_now) on conflict do nothing;
  end if;
  perform creditkit.lock_account(p_account_id, p_unit, p_now);
end;
$$;
comment on function creditkit.lock_for_setting(uuid, text, timestamptz) is
  'Locks an (account, unit) row for a change of its alert or auto top-up settings, opening it for a known account; CK003 / CK015 otherwise.';
revoke all on function creditkit.lock_for_setting(uuid, text, timestamptz) from public, anon, authenticated, service_role;

create or replace function creditkit.set_account_alert(p_account_id uuid, p_unit text, p_threshold bigint,
  p_percent numeric, p_now timestamptz)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
  perform creditkit.check_request(null, null, null, p_now);
  perform creditkit.check_threshold(p_threshold, p_percent);
  perform creditkit.lock_for_setting(p_account_id, p_unit, p_now);
  insert into creditkit.account_alerts as s (account_id, unit, threshold, percent)
  values (p_account_id, p_unit, p_threshold, p_percent)
  on conflict on constraint account_alerts_pkey do update
     set threshold = excluded.threshold, percent = excluded.percent, updated_at = excluded.updated_at;
  -- quietly: a balance already below the new threshold reads as low, without an event (events come
  -- from crossings; a setting flipped back and forth must not flood the endpoints)
  perform creditkit.watch(p_account_id, p_unit, true);
end;
$$;
comment on function creditkit.set_account_alert(uuid, text, bigint, numeric, timestamptz) is
  'Sets an (account, unit)''s own low-balance threshold (both NULL: the unit''s default) and applies it at once, quietly (no event for a balance already below it).';
revoke all on function creditkit.set_account_alert(uuid, text, bigint, numeric, timestamptz) from public, anon, authenticated, service_role;

-- Security definer: writes the kit's tables; service_role only.
create or replace function public.creditkit_set_account_balance_alert(
  p_account_id uuid,
  p_unit text,
  p_threshold bigint,
  p_percent numeric default null,
  p_now timestamptz default now())
returns table (account_id uuid, unit text, threshold bigint, source text, state text, spendable bigint)
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
begin
  perform creditkit.assert_server_caller();
  perform creditkit.set_account_alert(p_account_id, p_unit, p_threshold, p_percent, p_now);
  return query select * from creditkit.balance_alert_of(p_account_id, p_unit);
end;
$$;
comment on function public.creditkit_set_account_balance_alert(uuid, text, bigint, numeric, timestamptz) is
  'Server only. An account''s own low-balance threshold in a unit (absolute or a percentage of the plan allowance; both NULL: the unit''s default). A balance already below it reads as low at once, without an event; the next crossing writes one.';
revoke all on function public.creditkit_set_account_balance_alert(uuid, text, bigint, numeric, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_set_account_balance_alert(uuid, text, bigint, numeric, timestamptz) to service_role;

-- Security definer: the caller is checked (creditkit.caller_account) before anything is written.
create or replace function public.creditkit_my_set_balance_alert(
  p_unit text,
  p_threshold bigint,
  p_account_id uuid default null)
returns table (account_id uuid, unit text, threshold bigint, source text, state text, spendable bigint)
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_account_id uuid := creditkit.billing_account(p_account_id);
begin
  perform creditkit.set_account_alert(v_account_id, p_unit, p_threshold, null, now());
  return query select * from creditkit.balance_alert_of(v_account_id, p_unit);
end;
$$;
comment on function public.creditkit_my_set_balance_alert(text, bigint, uuid) is
  'Signed-in users. Your low-balance threshold in a unit (NULL: the default the app set), for your account or one creditkit.can_manage_billing lets you manage (CK005 otherwise).';
revoke all on function public.creditkit_my_set_balance_alert(text, bigint, uuid) from public, anon, authenticated, service_role;
grant execute on function public.creditkit_my_set_balance_alert(text, bigint, uuid) to authenticated;

-- Security definer: reads the kit's tables for the account named (the server's call).
create or replace function public.creditkit_balance_alert(
  p_account_id uuid,
  p_unit text default 'credits')
returns table (account_id uuid, unit text, threshold bigint, source text, state text, spendable bigint)
language plpgsql
stable
security definer
set search_path = ''
set enable_seqscan = off
as $$
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_unit(p_unit);
  if p_account_id is null then
    raise exception using errcode = 'CK006', message = 'invalid argument: account id must not be NULL';
  end if;
  return query select * from creditkit.balance_alert_of(p_account_id, p_unit);
end;
$$;
comment on function public.creditkit_balance_alert(uuid, text) is
  'Server only. An account''s low-balance threshold in a unit, where it comes from (account, unit or none), its state (ok, low, depleted) and spendable balance.';
revoke all on function public.creditkit_balance_alert(uuid, text) from public, anon, authenticated;
grant execute on function public.creditkit_balance_alert(uuid, text) to service_role;

-- Security definer: reads tables signed-in users have no grant on, for the caller's account only.
create or replace function public.creditkit_my_balance_alert(
  p_unit text default 'credits',
  p_account_id uuid default null)
returns table (account_id uuid, unit text, threshold bigint, source text, state text, spendable bigint)
language plpgsql
stable
security definer
set search_path = ''
set enable_seqscan = off
as $$
declare
  v_account_id uuid := creditkit.caller_account(p_account_id);
begin
  perform creditkit.check_unit(p_unit);
  return query select * from creditkit.balance_alert_of(v_account_id, p_unit);
end;
$$;
comment on function public.creditkit_my_balance_alert(text, uuid) is
  'Signed-in users. Your low-balance threshold in a unit and its state (ok, low, depleted): what a low-balance banner shows.';
revoke all on function public.creditkit_my_balance_alert(text, uuid) from public, anon, authenticated, service_role;
grant execute on function public.creditkit_my_balance_alert(text, uuid) to authenticated;

-- The row the auto top-up reads and settings answer.
create or replace function creditkit.auto_topup_of(p_account_id uuid, p_unit text, p_now timestamptz)
returns table (account_id uuid, unit text, enabled boolean, status text, status_reason text, threshold bigint,
               amount bigint, target bigint, pack_id text, failures integer, monthly_amount_cap bigint,
               monthly_count_cap integer, month_amount bigint, month_count integer, currency text,
               payment_method jsonb, last_topup jsonb)
language plpgsql
stable
set search_path = ''
as $$
declare
  -- (a statement of its own: on Citus a function called from a query on a shard cannot query again)
  v_month record := creditkit.month_charges(p_account_id, p_unit, p_now);
begin
  return query
  select p_account_id, p_unit, coalesce(t.enabled, false), coalesce(t.status, 'off'), t.status_reason, t.threshold,
         t.amount, t.target, t.pack_id, coalesce(t.failures, 0),
         least(t.monthly_amount_cap, terms.monthly_amount_cap), least(t.monthly_count_cap, terms.monthly_count_cap),
         v_month.amount, v_month.n, coalesce(k.currency, terms.currency),
         (select c.details from creditkit.card_on_file(p_account_id) c),
         (select jsonb_build_object('id', p.id, 'status', p.status, 'amount', p.amount, 'charge_amount', p.charge_amount,
                                    'currency', p.currency, 'failure_code', p.failure_code, 'action_url', p.action_url,
                                    'created_at', p.created_at, 'completed_at', p.completed_at)
            from creditkit.topups p where p.account_id = p_account_id and p.unit = p_unit
           order by p.created_at desc, p.id desc limit 1)
    from (select 1) one
    left join creditkit.auto_topups t on t.account_id = p_account_id and t.unit = p_unit
    left join creditkit.auto_topup_terms terms on terms.unit = p_unit
    left join creditkit.packs k on k.id = t.pack_id;
end;
$$;
comment on function creditkit.auto_topup_of(uuid, text, timestamptz) is
  'An (account, unit)''s auto top-up: settings, status, caps and what this month used, the card on file and the last top-up.';
revoke all on function creditkit.auto_topup_of(uuid, text, timestamptz) from public, anon, authenticated, service_role;

create or replace function creditkit.set_auto_topup(p_account_id uuid, p_unit text, p_enabled boolean, p_threshold bigint,
  p_amount bigint, p_target bigint, p_pack_id text, p_monthly_amount_cap bigint, p_monthly_count_cap integer,
  p_now timestamptz)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_terms creditkit.auto_topup_terms;
  v_pack creditkit.packs;
  v_card record;
begin
  perform creditkit.check_request(null, null, null, p_now);
  perform creditkit.check_unit(p_unit);
  if p_enabled is null then
    raise exception using errcode = 'CK006', message = 'invalid argument: enabled must not be NULL';
  end if;
  if not p_enabled then
    perform creditkit.lock_for_setting(p_account_id, p_unit, p_now);
    update creditkit.auto_topups t set enabled = false, status = 'off', status_reason = null, updated_at = now()
     where t.account_id = p_account_id and t.unit = p_unit;
    -- a top-up not charged yet is dropped; one being charged completes
    update creditkit.topups p set status = 'canceled', failure_code = 'auto_topup_off', completed_at = now(), updated_at = now()
     where p.account_id = p_account_id and p.unit = p_unit and p.status in ('pending', 'action_required');
    perform creditkit.watch(p_account_id, p_unit, false);
    return;
  end if;
  select t.* into v_terms from creditkit.auto_topup_terms t where t.unit = p_unit and t.enabled;
  if not found then
    raise exception using errcode = 'CK016', message = format('auto top-up is not offered for %s', p_unit);
  end if;
  if p_threshold is null or p_threshold < v_terms.min_threshold or p_threshold > 9007199254740991 then
    raise exception using errcode = 'CK006',
      message = format('invalid argument: the threshold must be at least %s', v_terms.min_threshold);
  end if;
  if num_nonnulls(p_amount, p_target, p_pack_id) <> 1 then
    raise exception using errcode = 'CK006', message = 'invalid argument: give exactly one of amount, target or pack';
  end if;
  if p_amount is not null and (p_amount < v_terms.min_amount or p_amount > v_terms.max_amount) then
    raise exception using errcode = 'CK001',
      message = format('invalid amount: a top-up of %s is between %s and %s', p_unit, v_terms.min_amount, v_terms.max_amount);
  end if;
  if p_target is not null and (p_target <= p_threshold or p_target > 9007199254740991) then
    raise exception using errcode = 'CK001', message = 'invalid amount: the target balance must be above the threshold';
  end if;
  if p_pack_id is not null then
    select k.* into v_pack from creditkit.packs k where k.id = p_pack_id and k.active and k.unit = p_unit and k.price_amount > 0;
    if not found then
      raise exception using errcode = 'CK013', message = format('unknown pack: %s (an active, priced pack of %s)', p_pack_id, p_unit);
    end if;
  end if;
  if p_monthly_amount_cap is not null then
    perform creditkit.check_amount(p_monthly_amount_cap);
  end if;
  if p_monthly_count_cap < 1 then
    raise exception using errcode = 'CK006', message = 'invalid argument: a monthly count cap is at least 1';
  end if;
  perform creditkit.lock_for_setting(p_account_id, p_unit, p_now);
  select * into v_card from creditkit.card_on_file(p_account_id);
  if v_card.payment_method is null then
    raise exception using errcode = 'CK016', message = 'auto top-up needs a card on file: save one through Stripe first';
  end if;
  if creditkit.settles_later(v_card.type) then
    raise exception using errcode = 'CK016',
      message = format('auto top-up needs a card: %s payments settle days later', v_card.type);
  end if;
  insert into creditkit.auto_topups as t (account_id, unit, enabled, status, threshold, amount, target, pack_id,
                                          monthly_amount_cap, monthly_count_cap)
  values (p_account_id, p_unit, true, 'active', p_threshold, p_amount, p_target, p_pack_id,
          p_monthly_amount_cap, p_monthly_count_cap)
  on conflict on constraint auto_topups_pkey do update
     set enabled = true, status = 'active', status_reason = null, failures = 0, armed = true,
         threshold = excluded.threshold, amount = excluded.amount, target = excluded.target, pack_id = excluded.pack_id,
         monthly_amount_cap = excluded.monthly_amount_cap, monthly_count_cap = excluded.monthly_count_cap,
         updated_at = excluded.updated_at;
  -- turned on again: a payment left waiting for the customer is dropped
  update creditkit.topups p set status = 'canceled', failure_code = 'auto_topup_reset', completed_at = now(), updated_at = now()
   where p.account_id = p_account_id and p.unit = p_unit and p.status = 'action_required';
  -- already at or below the threshold: the top-up starts now
  perform creditkit.watch(p_account_id, p_unit, false);
end;
$$;
comment on function creditkit.set_auto_topup(uuid, text, boolean, bigint, bigint, bigint, text, bigint, integer, timestamptz) is
  'Turns an (account, unit)''s auto top-up on (checked against the terms and the card on file; tops up at once when already at or below the threshold) or off.';
revoke all on function creditkit.set_auto_topup(uuid, text, boolean, bigint, bigint, bigint, text, bigint, integer, timestamptz) from public, anon, authenticated, service_role;

-- Security definer: writes the kit's tables; service_role only.
create or replace function public.creditkit_set_auto_topup(
  p_account_id uuid,
  p_unit text,
  p_enabled boolean,
  p_threshold bigint default null,
  p_amount bigint default null,
  p_target bigint default null,
  p_pack_id text default null,
  p_monthly_amount_cap bigint default null,
  p_monthly_count_cap integer default null,
  p_now timestamptz default now())
returns table (account_id uuid, unit text, enabled boolean, status text, status_reason text, threshold bigint,
               amount bigint, target bigint, pack_id text, failures integer, monthly_amount_cap bigint,
               monthly_count_cap integer, month_amount bigint, month_count integer, currency text,
               payment_method jsonb, last_topup jsonb)
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
begin
  perform creditkit.assert_server_caller();
  perform creditkit.set_auto_topup(p_account_id, p_unit, p_enabled, p_threshold, p_amount, p_target, p_pack_id,
                                   p_monthly_amount_cap, p_monthly_count_cap, p_now);
  return query select * from creditkit.auto_topup_of(p_account_id, p_unit, p_now);
end;
$$;
comment on function public.creditkit_set_auto_topup(uuid, text, boolean, bigint, bigint, bigint, text, bigint, integer, timestamptz) is
  'Server only. Turns an account''s auto top-up of a unit on (threshold; exactly one of amount, target balance or pack; optional monthly caps below the operator''s) or off. CK016 when the unit has no terms or the account no usable card.';
revoke all on function public.creditkit_set_auto_topup(uuid, text, boolean, bigint, bigint, bigint, text, bigint, integer, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_set_auto_topup(uuid, text, boolean, bigint, bigint, bigint, text, bigint, integer, timestamptz) to service_role;

-- Security definer: the caller is checked (creditkit.caller_account) before anything is written.
create or replace function public.creditkit_my_set_auto_topup(
  p_unit text,
  p_enabled boolean,
  p_threshold bigint default null,
  p_amount bigint default null,
  p_target bigint default null,
  p_pack_id text default null,
  p_account_id uuid default null)
returns table (account_id uuid, unit text, enabled boolean, status text, status_reason text, threshold bigint,
               amount bigint, target bigint, pack_id text, failures integer, monthly_amount_cap bigint,
               monthly_count_cap integer, month_amount bigint, month_count integer, currency text,
               payment_method jsonb, last_topup jsonb)
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_account_id uuid := creditkit.billing_account(p_account_id);
  v_caps record;
begin
  -- the customer's own caps are the ones they set before (the server sets them)
  select t.monthly_amount_cap, t.monthly_count_cap into v_caps
    from creditkit.auto_topups t where t.account_id = v_account_id and t.unit = p_unit;
  perform creditkit.set_auto_topup(v_account_id, p_unit, p_enabled, p_threshold, p_amount, p_target, p_pack_id,
                                   v_caps.monthly_amount_cap, v_caps.monthly_count_cap, now());
  return query select * from creditkit.auto_topup_of(v_account_id, p_unit, now());
end;
$$;
comment on function public.creditkit_my_set_auto_topup(text, boolean, bigint, bigint, bigint, text, uuid) is
  'Signed-in users. Turns auto top-up of a unit on for your account, or one creditkit.can_manage_billing lets you manage (threshold; exactly one of amount, target balance or pack), or off. Needs a card saved through Stripe (CK016).';
revoke all on function public.creditkit_my_set_auto_topup(text, boolean, bigint, bigint, bigint, text, uuid) from public, anon, authenticated, service_role;
grant execute on function public.creditkit_my_set_auto_topup(text, boolean, bigint, bigint, bigint, text, uuid) to authenticated;

-- Security definer: reads the kit's tables for the account named (the server's call).
create or replace function public.creditkit_auto_topup(
  p_account_id uuid,
  p_unit text default 'credits')
returns table (account_id uuid, unit text, enabled boolean, status text, status_reason text, threshold bigint,
               amount bigint, target bigint, pack_id text, failures integer, monthly_amount_cap bigint,
               monthly_count_cap integer, month_amount bigint, month_count integer, currency text,
               payment_method jsonb, last_topup jsonb)
language plpgsql
stable
security definer
set search_path = ''
set enable_seqscan = off
as $$
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_unit(p_unit);
  if p_account_id is null then
    raise exception using errcode = 'CK006', message = 'invalid argument: account id must not be NULL';
  end if;
  return query select * from creditkit.auto_topup_of(p_account_id, p_unit, now());
end;
$$;
comment on function public.creditkit_auto_topup(uuid, text) is
  'Server only. An account''s auto top-up of a unit: settings, status (off, active, action_required, disabled) and why, caps and this month''s use, the card on file, the last top-up.';
revoke all on function public.creditkit_auto_topup(uuid, text) from public, anon, authenticated;
grant execute on function public.creditkit_auto_topup(uuid, text) to service_role;

-- Security definer: reads tables signed-in users have no grant on, for the caller's account only.
create or replace function public.creditkit_my_auto_topup(
  p_unit text default 'credits',
  p_account_id uuid default null)
returns table (account_id uuid, unit text, enabled boolean, status text, status_reason text, threshold bigint,
               amount bigint, target bigint, pack_id text, failures integer, monthly_amount_cap bigint,
               monthly_count_cap integer, month_amount bigint, month_count integer, currency text,
               payment_method jsonb, last_topup jsonb)
language plpgsql
stable
security definer
set search_path = ''
set enable_seqscan = off
as $$
declare
  v_account_id uuid := creditkit.caller_account(p_account_id);
begin
  perform creditkit.check_unit(p_unit);
  return query select * from creditkit.auto_topup_of(v_account_id, p_unit, now());
end;
$$;
comment on function public.creditkit_my_auto_topup(text, uuid) is
  'Signed-in users. Your auto top-up of a unit: settings, status and why, caps and this month''s use, the card on file, the last top-up.';
revoke all on function public.creditkit_my_auto_topup(text, uuid) from public, anon, authenticated, service_role;
grant execute on function public.creditkit_my_auto_topup(text, uuid) to authenticated;

create or replace function creditkit.topups_page(p_account_id uuid, p_unit text, p_status text, p_limit integer)
returns table (id bigint, account_id uuid, unit text, status text, amount bigint, charge_amount bigint, currency text,
               attempt integer, payment_intent text, failure_code text, failure_message text, action_url text,
               created_at timestamptz, updated_at timestamptz, completed_at timestamptz)
language plpgsql
stable
set search_path = ''
as $$
begin
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception using errcode = 'CK006', message = 'invalid argument: limit must be between 1 and 1000';
  end if;
  if p_status not in ('pending', 'charging', 'processing', 'succeeded', 'failed', 'action_required', 'canceled') then
    raise exception using errcode = 'CK006', message = 'invalid argument: unknown top-up status';
  end if;
  return query
  select p.id, p.account_id, p.unit, p.status, p.amount, p.charge_amount, p.currency, p.attempt, p.payment_intent,
         p.failure_code, p.failure_message, p.action_url, p.created_at, p.updated_at, p.completed_at
    from creditkit.topups p
   where (p_account_id is null or p.account_id = p_account_id)
     and (p_unit is null or p.unit = p_unit)
     and (p_status is null or p.status = p_status)
   -- newest first by when they were written: ids come from each node's range on Citus (docs/citus.md, D1)
   order by p.created_at desc, p.id desc
   limit p_limit;
end;
$$;
comment on function creditkit.topups_page(uuid, text, text, integer) is 'Top-ups newest first, optionally of one account, unit or status.';
revoke all on function creditkit.topups_page(uuid, text, text, integer) from public, anon, authenticated, service_role;

-- Security definer: reads the kit's tables (the server's call).
create or replace function public.creditkit_topups(
  p_account_id uuid default null,
  p_status text default null,
  p_limit integer default 50)
returns table (id bigint, account_id uuid, unit text, status text, amount bigint, charge_amount bigint, currency text,
               attempt integer, payment_intent text, failure_code text, failure_message text, action_url text,
               created_at timestamptz, updated_at timestamptz, completed_at timestamptz)
language plpgsql
stable
security definer
set search_path = ''
set enable_seqscan = off
as $$
begin
  perform creditkit.assert_server_caller();
  return query select * from creditkit.topups_page(p_account_id, null, p_status, p_limit);
end;
$$;
comment on function public.creditkit_topups(uuid, text, integer) is
  'Server only. Top-ups newest first (optionally of one account or status): amount, charge, status, PaymentIntent, failure and action link.';
revoke all on function public.creditkit_topups(uuid, text, integer) from public, anon, authenticated;
grant execute on function public.creditkit_topups(uuid, text, integer) to service_role;

-- Security definer: reads tables signed-in users have no grant on, for the caller's account only.
create or replace function public.creditkit_my_topups(
  p_unit text default null,
  p_limit integer default 20,
  p_account_id uuid default null)
returns table (id bigint, account_id uuid, unit text, status text, amount bigint, charge_amount bigint, currency text,
               attempt integer, payment_intent text, failure_code text, failure_message text, action_url text,
               created_at timestamptz, updated_at timestamptz, completed_at timestamptz)
language plpgsql
stable
security definer
set search_path = ''
set enable_seqscan = off
as $$
declare
  v_account_id uuid := creditkit.caller_account(p_account_id);
begin
  if p_unit is not null then
    perform creditkit.check_unit(p_unit);
  end if;
  return query select * from creditkit.topups_page(v_account_id, p_unit, null, p_limit);
end;
$$;
comment on function public.creditkit_my_topups(text, integer, uuid) is
  'Signed-in users. Your top-ups newest first (optionally of one unit): amount, charge, status, failure and the link to pay one that needs you.';
revoke all on function public.creditkit_my_topups(text, integer, uuid) from public, anon, authenticated, service_role;
grant execute on function public.creditkit_my_topups(text, integer, uuid) to authenticated;

-- ---------------------------------------------------------------------------------------------
-- The worker's side of top-ups (service_role only)
-- ---------------------------------------------------------------------------------------------

-- Security definer: writes the kit's tables; service_role only. Claims due top-ups with SKIP
-- LOCKED. A top-up whose worker's lease ran out is handed out again as it was (same attempt, key,
-- card and amount), so Stripe answers the first charge instead of making a second. A new charge is
-- checked first: auto top-up still on, a usable card, the cooldown since the last charge, the
-- monthly caps (a top-up over a cap waits for the next month).
create or replace function public.creditkit_worker_claim_topups(
  p_limit integer default 10,
  p_lease interval default '2 minutes',
  p_now timestamptz default now())
returns table (topup_id bigint, attempt integer, idempotency_key text, account_id uuid, unit text, amount bigint,
               charge_amount bigint, currency text, customer_id text, payment_method text, metadata jsonb)
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_pick record;
  v_claimed integer := 0;
  v_topup creditkit.topups;
  v_auto creditkit.auto_topups;
  v_terms creditkit.auto_topup_terms;
  v_card record;
  v_last timestamptz;
  v_month timestamptz := date_trunc('month', p_now at time zone 'UTC') at time zone 'UTC';
  v_used record;
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_request(null, null, null, p_now);
  if p_limit is null or p_limit < 1 or p_limit > 1000 or p_lease is null or p_lease < interval '1 second' then
    raise exception using errcode = 'CK006', message = 'invalid argument: limit between 1 and 1000, lease at least 1 second';
  end if;
  -- picked without a lock, then each locked by its id and account (one shard on Citus) and
  -- checked again: one another worker holds, or that changed since, is left for the next claim
  for v_pick in
    select p.id, p.account_id from creditkit.topups p
     where (p.status = 'pending' and coalesce(p.next_attempt_at, '-infinity') <= p_now)
        or (p.status = 'charging' and p.claimed_until <= p_now)
     order by coalesce(p.next_attempt_at, '-infinity'), p.id
     limit p_limit * 4  -- room for the ones other workers hold
  loop
    exit when v_claimed >= p_limit;
    select p.* into v_topup from creditkit.topups p
     where p.id = v_pick.id and p.account_id = v_pick.account_id
       and ((p.status = 'pending' and coalesce(p.next_attempt_at, '-infinity') <= p_now)
            or (p.status = 'charging' and p.claimed_until <= p_now))
       for update skip locked;
    continue when not found;
    if v_topup.status = 'pending' then
      -- the account's lock (the order every writer of its auto top-up keeps: the account, then its
      -- top-ups); a busy account's top-up waits for the next claim instead of holding up the rest
      perform from creditkit.accounts a where a.id = v_topup.account_id and a.unit = v_topup.unit for update skip locked;
      if not found then
        continue;
      end if;
      select t.* into v_auto from creditkit.auto_topups t where t.account_id = v_topup.account_id and t.unit = v_topup.unit;
      select t.* into v_terms from creditkit.auto_topup_terms t where t.unit = v_topup.unit;
      if v_auto.status is distinct from 'active' or not coalesce(v_terms.enabled, false) then
        update creditkit.topups p
           set status = 'canceled', failure_code = 'auto_topup_' || coalesce(v_auto.status, 'off'),
               completed_at = now(), updated_at = now()
         where p.id = v_topup.id and p.account_id = v_topup.account_id;
        continue;
      end if;
      select * into v_card from creditkit.card_on_file(v_topup.account_id);
      if v_card.payment_method is null or creditkit.settles_later(v_card.type) then
        perform creditkit.topup_failed(v_topup.id, false,
          case when v_card.payment_method is null then 'no_payment_method' else 'payment_method_delayed' end,
          'auto top-up needs a card that settles at once', null,
          case when v_card.payment_method is null then 'no_payment_method' else 'payment_method_delayed' end);
        continue;
      end if;
      select max(p.charged_at) into v_last from creditkit.topups p
       where p.account_id = v_topup.account_id and p.unit = v_topup.unit and p.id <> v_topup.id;
      if v_last + v_terms.cooldown > p_now then
        update creditkit.topups p set next_attempt_at = v_last + v_terms.cooldown, updated_at = now() where p.id = v_topup.id and p.account_id = v_topup.account_id;
        continue;
      end if;
      select * into v_used from creditkit.month_charges(v_topup.account_id, v_topup.unit, p_now);
      if v_used.n >= least(v_auto.monthly_count_cap, v_terms.monthly_count_cap)
         or v_used.amount + v_topup.charge_amount > least(v_auto.monthly_amount_cap, v_terms.monthly_amount_cap) then
        update creditkit.topups p
           set next_attempt_at = v_month + interval '1 month', failure_code = 'monthly_cap_reached', updated_at = now()
         where p.id = v_topup.id and p.account_id = v_topup.account_id;
        continue;
      end if;
      update creditkit.topups p
         set status = 'charging', attempt = p.attempt + 1, claimed_until = p_now + p_lease, charged_at = p_now,
             -- a charge Stripe may have made already (no answer came) is asked again as it was
             customer_id = coalesce(p.customer_id, v_card.customer_id),
             payment_method = coalesce(p.payment_method, v_card.payment_method), failure_code = null,
             updated_at = now()
       where p.id = v_topup.id and p.account_id = v_topup.account_id
      returning p.* into v_topup;
    else
      -- the lease ran out: the same charge again (Stripe answers it from its idempotency key)
      update creditkit.topups p set claimed_until = p_now + p_lease, updated_at = now()
       where p.id = v_topup.id and p.account_id = v_topup.account_id
      returning p.* into v_topup;
    end if;
    topup_id := v_topup.id;
    attempt := v_topup.attempt;
    idempotency_key := 'creditkit-topup-' || v_topup.id;
    account_id := v_topup.account_id;
    unit := v_topup.unit;
    amount := v_topup.amount;
    charge_amount := v_topup.charge_amount;
    currency := v_topup.currency;
    customer_id := v_topup.customer_id;
    payment_method := v_topup.payment_method;
    metadata := jsonb_build_object('creditkit_topup_id', v_topup.id::text, 'creditkit_account_id', v_topup.account_id::text,
                                   'creditkit_unit', v_topup.unit, 'creditkit_amount', v_topup.amount::text);
    v_claimed := v_claimed + 1;
    return next;
  end loop;
end;
$$;
comment on function public.creditkit_worker_claim_topups(integer, interval, timestamptz) is
  'Server only (the worker). Claims up to p_limit due top-ups for p_lease: amount, charge, customer, card, the Stripe idempotency key and PaymentIntent metadata. Checks auto top-up, the card, cooldown and monthly caps first; a lease that ran out hands the same charge out again.';
revoke all on function public.creditkit_worker_claim_topups(integer, interval, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_worker_claim_topups(integer, interval, timestamptz) to service_role;

-- Security definer: writes the kit's tables; service_role only.
create or replace function public.creditkit_worker_topup_result(
  p_topup_id bigint,
  p_attempt integer,
  p_outcome text,
  p_payment_intent text default null,
  p_code text default null,
  p_message text default null,
  p_now timestamptz default now(),
  out status text,
  out auto_topup_status text)
returns record
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_topup creditkit.topups;
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_request(null, null, null, p_now);
  if p_outcome is null or p_outcome not in ('succeeded', 'processing', 'requires_action', 'declined', 'retry') then
    raise exception using errcode = 'CK006',
      message = 'invalid argument: outcome is succeeded, processing, requires_action, declined or retry';
  end if;
  if p_payment_intent is not null and p_payment_intent !~ '^pi_[A-Za-z0-9_]+$' then
    raise exception using errcode = 'CK006', message = 'invalid argument: a payment intent id is pi_...';
  end if;
  select p.* into v_topup from creditkit.topups p where p.id = p_topup_id;
  if not found then
    raise exception using errcode = 'CK018', message = format('unknown top-up: %s', p_topup_id);
  end if;
  -- the account's lock first, then the top-up's (the order of every writer of both)
  perform from creditkit.accounts a where a.id = v_topup.account_id and a.unit = v_topup.unit for update;
  select p.* into v_topup from creditkit.topups p where p.id = p_topup_id and p.account_id = v_topup.account_id for update;
  if v_topup.status = 'charging' and v_topup.attempt = p_attempt then
    if p_outcome in ('succeeded', 'processing') then
      -- charged: the credits land from payment_intent.succeeded
      update creditkit.topups p
         set status = 'processing', payment_intent = coalesce(p_payment_intent, p.payment_intent), claimed_until = null,
             updated_at = now()
       where p.id = p_topup_id and p.account_id = v_topup.account_id;
    elsif p_outcome = 'retry' and v_topup.attempt >= 5 then
      -- five tries without an answer (Stripe keeps a 500 under its key and answers it again):
      -- this charge is given up, not counted against the card; the next top-up, with its own
      -- key, follows after the cooldown
      perform creditkit.topup_failed(p_topup_id, false, coalesce(p_code, 'stripe_unavailable'), p_message, p_payment_intent,
                                     'stripe_unavailable');
    elsif p_outcome = 'retry' then
      -- no answer from Stripe: the same charge (same key) after a short wait
      update creditkit.topups p
         set status = 'pending', claimed_until = null, next_attempt_at = p_now + interval '30 seconds',
             failure_code = left(p_code, 100), failure_message = left(p_message, 1000), updated_at = now()
       where p.id = p_topup_id and p.account_id = v_topup.account_id;
    else
      perform creditkit.topup_failed(p_topup_id, p_outcome = 'requires_action',
                                     coalesce(p_code, case when p_outcome = 'requires_action' then 'authentication_required'
                                                           else 'card_declined' end),
                                     p_message, p_payment_intent);
    end if;
  end if;
  select p.status into status from creditkit.topups p where p.id = p_topup_id and p.account_id = v_topup.account_id;
  select coalesce(t.status, 'off') into auto_topup_status
    from (select 1) one left join creditkit.auto_topups t on t.account_id = v_topup.account_id and t.unit = v_topup.unit;
end;
$$;
comment on function public.creditkit_worker_topup_result(bigint, integer, text, text, text, text, timestamptz) is
  'Server only (the worker). Records how a top-up''s charge went: succeeded or processing (the webhook grants), requires_action (auto top-up pauses; the customer gets a link), declined (counted; the third disables auto top-up), retry (no answer: the same charge, same key, 30 seconds later; after the fifth try it fails as stripe_unavailable, not counted, and a new top-up follows). An answer to a stale attempt changes nothing.';
revoke all on function public.creditkit_worker_topup_result(bigint, integer, text, text, text, text, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_worker_topup_result(bigint, integer, text, text, text, text, timestamptz) to service_role;

-- ---------------------------------------------------------------------------------------------
-- Replaced: the debit and the batch leave a watched row's alert level to the slow path; the Stripe
-- dispatcher routes the card and top-up events
-- ---------------------------------------------------------------------------------------------

-- The debit: every spend of a usage event goes through here (creditkit_consume, and
-- creditkit_meter and the charge-on-insert trigger through creditkit.meter). Callers validate.
--
-- A debit that would take a watched row to its alert level (accounts.alert_at: a low-balance
-- threshold or an auto top-up) takes the slow path too, whose writes fire the watch at commit
-- (creditkit.watch_balance): the fast path never reaches one.
--
-- While nothing is due, one guarded UPDATE checks and debits: it locks the row only if it debits,
-- and counts the credit in `undrawn` instead of drawing the buckets (the next lock_account draws
-- it, in spend order). One INSERT appends the ledger row; with a key, the key's row goes first and
-- its unique index answers whether the key was used before (a retry undoes the debit and is
-- answered from the first row). A refusal reads the account once and writes nothing, not even a
-- lock. Anything else (something due, a retry, an unknown account, credit that arrived
-- meanwhile) takes the slow path: lock_account books what is due, then the buckets are drawn.
--
-- creditkit_consume carries a copy of the fast path (a function call costs the hot path about a
-- tenth), between the same markers; a test keeps the two texts identical. p_metadata is what the
-- caller asked for (validated, matched on a retry); p_detail the kit's own fields stored beside it
-- (a metered event's price). With a detail, a retry is matched on what was asked, not on the
-- amount, which the detail decided and which may have changed since.
create or replace function creditkit.debit(
  p_account_id uuid, p_unit text, p_amount bigint, p_event text, p_idempotency_key text, p_metadata jsonb,
  p_detail jsonb, p_cost_micros bigint, p_now timestamptz,
  out allowed boolean, out balance bigint, out transaction_id bigint, out amount bigint)
returns record
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_metadata jsonb := coalesce(p_metadata, '{}'::jsonb) || coalesce(p_detail, '{}'::jsonb);
  v_balance bigint;
  v_spendable bigint;
  v_due_at timestamptz;
  v_retry boolean := false;
  v_prior creditkit.ledger;
  v_entry creditkit.ledger;
begin
  amount := p_amount;
  -- <the debit's fast path: the same text in creditkit.debit and creditkit_consume>
  update creditkit.accounts a
     set balance = a.balance - p_amount,
         undrawn = a.undrawn + p_amount,
         version = a.version + 1
   where a.id = p_account_id and a.unit = p_unit
     and a.balance - a.held >= p_amount
     and (a.due_at is null or a.due_at > p_now)
     and (a.alert_at is null or a.balance - a.held - p_amount > a.alert_at)
  returning a.balance, a.balance - a.held into v_balance, v_spendable;
  if found then
    if p_idempotency_key is null then
      insert into creditkit.ledger (account_id, kind, amount, balance_after, event, cost_micros, metadata, created_at, unit)
      values (p_account_id, 'consume', -p_amount, v_balance, p_event, p_cost_micros, coalesce(v_metadata, '{}'::jsonb), p_now, p_unit)
      returning true, v_spendable, id into allowed, balance, transaction_id;
      return;
    end if;
    -- Every write of this account's ledger holds its row lock, which we now hold, so the key's
    -- unique index sees any earlier call with the key.
    insert into creditkit.ledger_keys (account_id, idempotency_key, ledger_id)
    values (p_account_id, p_idempotency_key, nextval('creditkit.ledger_id_seq'))
    on conflict do nothing
    returning ledger_id into transaction_id;
    if found then
      insert into creditkit.ledger (id, account_id, kind, amount, balance_after, event, idempotency_key,
                                    cost_micros, metadata, created_at, unit)
      overriding system value
      values (transaction_id, p_account_id, 'consume', -p_amount, v_balance, p_event, p_idempotency_key,
              p_cost_micros, coalesce(v_metadata, '{}'::jsonb), p_now, p_unit)
      returning true, v_spendable into allowed, balance;
      return;
    end if;
    -- A retry: undo the debit (the rare case pays) and answer it from the first row, still under
    -- the row lock (creditkit.debit does; creditkit_consume hands it over).
    update creditkit.accounts a
       set balance = a.balance + p_amount, undrawn = a.undrawn - p_amount, version = a.version - 1
     where a.id = p_account_id and a.unit = p_unit;
    v_retry := true;
  else
    -- Refused without a lock: read the account once. When nothing is due, the key (if any) was
    -- never used and the spendable balance cannot cover the amount, that snapshot is the answer.
    select false, greatest(a.balance - a.held, 0), a.due_at into allowed, balance, v_due_at
      from creditkit.accounts a where a.id = p_account_id and a.unit = p_unit;
    if found and (v_due_at is null or v_due_at > p_now) and balance < p_amount then
      if p_idempotency_key is not null then
        perform from creditkit.ledger_keys k where k.account_id = p_account_id and k.idempotency_key = p_idempotency_key;
      end if;
      if p_idempotency_key is null or not found then
        return;
      end if;
    end if;
  end if;
  -- </the debit's fast path>

  -- A retry found under the row lock of the fast path, or the slow path (which locks first).
  if not v_retry then
    if not creditkit.unit_row_ready(p_account_id, p_unit, p_now) then
      -- A known account with nothing in this unit: blocked, no ledger row. A key it used already
      -- (necessarily in another unit) is CK004.
      perform creditkit.find_replay(p_account_id, p_unit, p_idempotency_key, 'consume', -p_amount, p_event,
                                    coalesce(p_metadata, '{}'::jsonb));
      allowed := false;
      balance := 0;
      return;
    end if;
    v_spendable := creditkit.lock_account(p_account_id, p_unit, p_now);
  end if;
  v_prior := creditkit.find_replay(p_account_id, p_unit, p_idempotency_key, 'consume',
                                   case when p_detail is null then -p_amount end, p_event,
                                   coalesce(p_metadata, '{}'::jsonb), p_cost_micros, null,
                                   coalesce(array(select jsonb_object_keys(p_detail)), '{}'));
  if v_prior.id is not null then
    allowed := true;
    balance := v_prior.balance_after;
    transaction_id := v_prior.id;
    amount := -v_prior.amount;
    return;
  elsif v_retry then
    raise exception 'creditkit invariant broken: key % of account % names no ledger row', p_idempotency_key, p_account_id;
  end if;
  if v_spendable < p_amount then
    -- Blocked: a result, not an error, and no ledger row.
    allowed := false;
    balance := v_spendable;
    return;
  end if;
  perform creditkit.draw_down(p_account_id, p_unit, p_amount, p_now);
  v_entry := creditkit.append_entry(p_account_id, p_unit, 'consume', -p_amount, null, p_event, p_idempotency_key,
                                    v_metadata, p_now, null, p_cost_micros, null);
  allowed := true;
  balance := v_spendable - p_amount;
  transaction_id := v_entry.id;
end;
$$;
comment on function creditkit.debit(uuid, text, bigint, text, text, jsonb, jsonb, bigint, timestamptz) is
  'The one debit of a usage event: spends p_amount of p_unit if the account can cover it (allowed, spendable balance left, ledger id, amount), idempotent by key. Callers validate the arguments (an unknown unit is CK015 on the slow path).';
revoke all on function creditkit.debit(uuid, text, bigint, text, text, jsonb, jsonb, bigint, timestamptz) from public, anon, authenticated, service_role;

-- Security definer: writes the kit's tables, which no client role may write; service_role only.
-- The hot path: one test of the arguments, then the debit's fast path (a copy of creditkit.debit's,
-- see there); the rare rest is creditkit.debit.
create or replace function public.creditkit_consume(
  p_account_id uuid,
  p_amount bigint,
  p_event text default null,
  p_idempotency_key text default null,
  p_metadata jsonb default null,
  p_cost_micros bigint default null,
  p_now timestamptz default now(),
  p_unit text default 'credits',
  out allowed boolean,
  out balance bigint,
  out transaction_id bigint)
returns record
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_metadata jsonb;
  v_balance bigint;
  v_spendable bigint;
  v_due_at timestamptz;
  v_retry boolean;
begin
  -- One test for everything a plain call does not have: a client role (assert_server_caller's
  -- test, inlined), an argument NULL or out of range, or an event, key or metadata to validate.
  -- Only then do the checks run, in their usual order. (Every IF is an expression that plpgsql
  -- prepares again in each transaction, so the hot path keeps them few.)
  if current_setting('role', true) in ('anon', 'authenticated') or auth.role() in ('anon', 'authenticated')
     or p_account_id is null or p_amount is null or p_amount < 1 or p_amount > 9007199254740991 or p_now is null
     or not isfinite(p_now) or p_cost_micros < 0 or p_cost_micros > 9007199254740991
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
  -- <the debit's fast path: the same text in creditkit.debit and creditkit_consume>
  update creditkit.accounts a
     set balance = a.balance - p_amount,
         undrawn = a.undrawn + p_amount,
         version = a.version + 1
   where a.id = p_account_id and a.unit = p_unit
     and a.balance - a.held >= p_amount
     and (a.due_at is null or a.due_at > p_now)
     and (a.alert_at is null or a.balance - a.held - p_amount > a.alert_at)
  returning a.balance, a.balance - a.held into v_balance, v_spendable;
  if found then
    if p_idempotency_key is null then
      insert into creditkit.ledger (account_id, kind, amount, balance_after, event, cost_micros, metadata, created_at, unit)
      values (p_account_id, 'consume', -p_amount, v_balance, p_event, p_cost_micros, coalesce(v_metadata, '{}'::jsonb), p_now, p_unit)
      returning true, v_spendable, id into allowed, balance, transaction_id;
      return;
    end if;
    -- Every write of this account's ledger holds its row lock, which we now hold, so the key's
    -- unique index sees any earlier call with the key.
    insert into creditkit.ledger_keys (account_id, idempotency_key, ledger_id)
    values (p_account_id, p_idempotency_key, nextval('creditkit.ledger_id_seq'))
    on conflict do nothing
    returning ledger_id into transaction_id;
    if found then
      insert into creditkit.ledger (id, account_id, kind, amount, balance_after, event, idempotency_key,
                                    cost_micros, metadata, created_at, unit)
      overriding system value
      values (transaction_id, p_account_id, 'consume', -p_amount, v_balance, p_event, p_idempotency_key,
              p_cost_micros, coalesce(v_metadata, '{}'::jsonb), p_now, p_unit)
      returning true, v_spendable into allowed, balance;
      return;
    end if;
    -- A retry: undo the debit (the rare case pays) and answer it from the first row, still under
    -- the row lock (creditkit.debit does; creditkit_consume hands it over).
    update creditkit.accounts a
       set balance = a.balance + p_amount, undrawn = a.undrawn - p_amount, version = a.version - 1
     where a.id = p_account_id and a.unit = p_unit;
    v_retry := true;
  else
    -- Refused without a lock: read the account once. When nothing is due, the key (if any) was
    -- never used and the spendable balance cannot cover the amount, that snapshot is the answer.
    select false, greatest(a.balance - a.held, 0), a.due_at into allowed, balance, v_due_at
      from creditkit.accounts a where a.id = p_account_id and a.unit = p_unit;
    if found and (v_due_at is null or v_due_at > p_now) and balance < p_amount then
      if p_idempotency_key is not null then
        perform from creditkit.ledger_keys k where k.account_id = p_account_id and k.idempotency_key = p_idempotency_key;
      end if;
      if p_idempotency_key is null or not found then
        return;
      end if;
    end if;
  end if;
  -- </the debit's fast path>

  select d.allowed, d.balance, d.transaction_id into allowed, balance, transaction_id
    from creditkit.debit(p_account_id, p_unit, p_amount, p_event, p_idempotency_key, v_metadata, null, p_cost_micros, p_now) d;
end;
$$;
comment on function public.creditkit_consume(uuid, bigint, text, text, jsonb, bigint, timestamptz, text) is
  'Server only. Spends p_amount of p_unit (default credits) if the account can cover it: allowed=true with the new balance and ledger id, or allowed=false (blocked, nothing spent). Never below zero. Idempotent by key.';
revoke all on function public.creditkit_consume(uuid, bigint, text, text, jsonb, bigint, timestamptz, text) from public, anon, authenticated;
grant execute on function public.creditkit_consume(uuid, bigint, text, text, jsonb, bigint, timestamptz, text) to service_role;

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

-- Dispatches a stored event to its applier; returns (status, effect, account). Every error an
-- event's own content causes is caught here and recorded as dead, each applier's writes undone:
-- an unknown account, pack or price, a balance limit, a payload the appliers cannot read, any
-- other error (its SQLSTATE): the same event would fail the same way on every retry, so it waits
-- for the operator (creditkit_stripe_replay) instead of being retried for three days and lost.
-- Only transient errors propagate (serialization failures, deadlocks, lock and statement
-- timeouts, the server going away): the transaction rolls back and the webhook answers 5xx.
create or replace function creditkit.stripe_dispatch(p_event jsonb, p_now timestamptz,
  out status text, out effect text, out account_id uuid, out error_code text, out error_message text)
returns record
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_type text := p_event ->> 'type';
  v_object jsonb := p_event #> '{data,object}';
  v_state text;
  v_detail text;
  r record;
begin
  status := 'applied';
  begin
    if v_type in ('checkout.session.completed', 'checkout.session.async_payment_succeeded',
                  'checkout.session.async_payment_failed') then
      if v_object ->> 'mode' = 'subscription' then
        if v_type = 'checkout.session.completed' then
          select * into r from creditkit.stripe_subscription_checkout(p_event, v_object, p_now);
        else
          status := 'ignored';
          effect := 'subscription checkouts are applied from their invoices';
          return;
        end if;
      elsif v_object ->> 'mode' = 'payment' then
        select * into r from creditkit.stripe_pack_checkout(p_event, v_object, p_now);
      elsif v_object ->> 'mode' = 'setup' and v_type = 'checkout.session.completed' then
        select * into r from creditkit.stripe_card_event(p_event, v_object, p_now);
      else
        status := 'ignored';
        effect := format('checkout mode %s is not used by creditkit', coalesce(v_object ->> 'mode', 'NULL'));
        return;
      end if;
    elsif v_type = 'invoice.paid' then
      select * into r from creditkit.stripe_invoice_paid(p_event, v_object, p_now);
    elsif v_type in ('customer.subscription.created', 'customer.subscription.updated', 'customer.subscription.deleted') then
      select * into r from creditkit.stripe_subscription_event(p_event, v_object, p_now);
    elsif v_type in ('charge.refunded', 'charge.dispute.funds_withdrawn', 'charge.dispute.funds_reinstated') then
      select * into r from creditkit.stripe_reversal(p_event, v_object, p_now);
    elsif v_type = 'invoice_payment.paid' then
      select * into r from creditkit.stripe_invoice_payment(p_event, v_object, p_now);
    elsif v_type in ('payment_intent.succeeded', 'payment_intent.payment_failed')
          and v_object #>> '{metadata,creditkit_topup_id}' is not null then
      select * into r from creditkit.stripe_topup_payment(p_event, v_object, p_now);
    elsif v_type = 'payment_intent.succeeded' and v_object ->> 'setup_future_usage' = 'off_session'
          or v_type = 'setup_intent.succeeded' and coalesce(v_object ->> 'usage', 'off_session') = 'off_session'
          or v_type = 'customer.updated' and v_object #> '{invoice_settings,default_payment_method}' is not null
             and jsonb_typeof(v_object #> '{invoice_settings,default_payment_method}') <> 'null' then
      -- a card saved for off-session charges (anything else of these types is ignored below)
      select * into r from creditkit.stripe_card_event(p_event, v_object, p_now);
    elsif v_type in ('payment_method.attached', 'payment_method.detached') then
      select * into r from creditkit.stripe_payment_method_event(p_event, v_object, p_now);
    else
      status := 'ignored';
      effect := 'event type not used by creditkit';
      return;
    end if;
    account_id := r.account_id;
    effect := r.effect;
  exception when others then
    get stacked diagnostics v_state = returned_sqlstate, v_detail = pg_exception_detail;
    if v_state = 'CKD01' then
      status := 'dead';
      error_code := v_detail;
    elsif v_state like 'CK%' then
      status := 'dead';
      error_code := (select c.name from creditkit.error_codes c where c.code = v_state);
    elsif v_state like '22%' or v_state = '23514' then
      status := 'dead';
      error_code := 'invalid_event';
    elsif v_state like '40%' or v_state like '08%' or v_state like '53%' or v_state like '57%' or v_state like '58%'
          or v_state = '55P03' then
      -- transient (a serialization failure or deadlock, a lock or statement timeout, the server
      -- going away, out of resources): the transaction rolls back and Stripe's retry applies it
      raise;
    else
      -- Anything else would fail the same way on every retry, for three days, and then be lost:
      -- it waits for the operator instead, with its SQLSTATE (creditkit_stripe_replay).
      status := 'dead';
      error_code := v_state;
    end if;
    get stacked diagnostics error_message = message_text;
    effect := null;
    account_id := null;
  end;
end;
$$;
comment on function creditkit.stripe_dispatch(jsonb, timestamptz) is
  'Applies one Stripe event by type; catches the dead ends (recorded for the operator) and lets other errors through.';
revoke all on function creditkit.stripe_dispatch(jsonb, timestamptz) from public, anon, authenticated, service_role;

-- Security definer: writes the unit catalogue, which no client role may write; service_role only.
create or replace function public.creditkit_upsert_unit(p_id text, p_name text, p_kind text default 'metered')
returns jsonb
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_unit creditkit.units;
begin
  perform creditkit.assert_server_caller();
  if p_id is null or p_id !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' then
    raise exception using errcode = 'CK006', message = 'invalid argument: unit id must match ^[a-z0-9][a-z0-9_.-]{0,62}$';
  end if;
  if p_name is null or p_name !~ '[^[:space:]]' or length(p_name) > 200 then
    raise exception using errcode = 'CK006', message = 'invalid argument: unit name must be 1 to 200 characters, not blank';
  end if;
  if p_kind is null or p_kind not in ('metered', 'boolean') then
    raise exception using errcode = 'CK006', message = 'invalid argument: kind is metered or boolean';
  end if;
  -- A balance, a bucket or a plan limit in the unit is read as that kind. (select 1: on Citus an
  -- expression with a subquery over every shard of accounts is planned in steps, and a subquery
  -- without a column in it fails, "a column definition list is required for functions returning
  -- record".)
  if exists (select 1 from creditkit.units u where u.id = p_id and u.kind <> p_kind)
     and (p_id = 'credits'
          or exists (select 1 from creditkit.accounts a where a.unit = p_id)
          or exists (select 1 from creditkit.plan_limits l where l.unit = p_id)
          or exists (select 1 from creditkit.prices p where p.unit = p_id)
          or exists (select 1 from creditkit.packs k where k.unit = p_id)) then
    raise exception using errcode = 'CK006',
      message = format('invalid argument: the kind of unit %s cannot change once accounts, plan limits, prices or packs use it', p_id);
  end if;
  insert into creditkit.units as u (id, name, kind) values (p_id, p_name, p_kind)
  on conflict (id) do update set name = excluded.name, kind = excluded.kind
  returning u.* into v_unit;
  return to_jsonb(v_unit);
end;
$$;
comment on function public.creditkit_upsert_unit(text, text, text) is
  'Server only. Creates or renames a unit: metered (a balance per account) or boolean (a plan feature flag). The kind cannot change once an account holds the unit or a plan limit, price or pack names it; credits is always metered. Naturally idempotent.';
revoke all on function public.creditkit_upsert_unit(text, text, text) from public, anon, authenticated;
grant execute on function public.creditkit_upsert_unit(text, text, text) to service_role;
-- ---------------------------------------------------------------------------------------------
-- Replaced: the server reads of per-account tables (history, has_feature, the analytics) are
-- security definer and refuse client roles themselves (creditkit.assert_server_caller), as 0.3.0's
-- server reads do; accounts_per_plan reads the plan in force as one join (docs/citus.md F7, F9)
-- ---------------------------------------------------------------------------------------------
create or replace function public.creditkit_has_feature(p_account_id uuid, p_feature text)
returns boolean
language plpgsql
stable
security definer
set search_path = ''
set enable_seqscan = off
as $$
begin
  perform creditkit.assert_server_caller();
  if p_account_id is null or p_feature is null or p_feature !~ '[^[:space:]]' or length(p_feature) > 200 then
    raise exception using errcode = 'CK006', message = 'invalid argument: account id and feature name (1 to 200 characters) are required';
  end if;
  if not exists (select 1 from creditkit.accounts a where a.id = p_account_id) then
    raise exception using errcode = 'CK003', message = format('unknown account: %s', p_account_id),
      detail = jsonb_build_object('account_id', p_account_id)::text;
  end if;
  return coalesce(((creditkit.effective_plan(p_account_id)).features ->> p_feature)::boolean, false);
end;
$$;
comment on function public.creditkit_has_feature(uuid, text) is
  'Server only. Whether a feature flag is on in the plan in force for the account (false when absent).';
revoke all on function public.creditkit_has_feature(uuid, text) from public, anon, authenticated;
grant execute on function public.creditkit_has_feature(uuid, text) to service_role;

create or replace function public.creditkit_history(
  p_account_id uuid,
  p_limit integer default 50,
  p_before_id bigint default null,
  p_unit text default 'credits')
returns table (id bigint, kind text, amount bigint, balance_after bigint, grant_id bigint, event text,
               idempotency_key text, metadata jsonb, created_at timestamptz)
language plpgsql
stable
security definer
set search_path = ''
set enable_seqscan = off
as $$
begin
  perform creditkit.assert_server_caller();
  if p_account_id is null then
    raise exception using errcode = 'CK006', message = 'invalid argument: account id must not be NULL';
  end if;
  if not exists (select 1 from creditkit.accounts a where a.id = p_account_id and a.unit = 'credits') then
    raise exception using errcode = 'CK003', message = format('unknown account: %s', p_account_id),
      detail = jsonb_build_object('account_id', p_account_id)::text;
  end if;
  if p_unit is distinct from 'credits' then
    perform creditkit.check_unit(p_unit);
  end if;
  return query select * from creditkit.history_page(p_account_id, p_unit, p_limit, p_before_id);
end;
$$;
comment on function public.creditkit_history(uuid, integer, bigint, text) is
  'Server only. An account''s ledger in p_unit (default credits), newest first, p_limit rows (1..1000) with id < p_before_id: pass the last id of a page to get the next.';
revoke all on function public.creditkit_history(uuid, integer, bigint, text) from public, anon, authenticated;
grant execute on function public.creditkit_history(uuid, integer, bigint, text) to service_role;

create or replace function public.creditkit_account_margin(
  p_from timestamptz,
  p_to timestamptz,
  p_account_id uuid default null)
returns table (account_id uuid, credits_granted bigint, credits_spent bigint, revenue_micros bigint,
               cost_micros bigint, margin_micros bigint)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_period(p_from, p_to);
  return query
    select l.account_id,
           coalesce(sum(l.amount) filter (where l.kind = 'grant' and l.unit = 'credits'), 0)::bigint,
           coalesce(-sum(l.amount) filter (where l.kind = 'consume' and l.unit = 'credits'), 0)::bigint,
           coalesce(sum(l.revenue_micros), 0)::bigint,
           coalesce(sum(l.cost_micros), 0)::bigint,
           (coalesce(sum(l.revenue_micros), 0) - coalesce(sum(l.cost_micros), 0))::bigint
      from creditkit.ledger l
     where l.created_at >= p_from and l.created_at < p_to
       and (p_account_id is null or l.account_id = p_account_id)
     group by l.account_id
     order by 6 desc, 1;
end;
$$;
comment on function public.creditkit_account_margin(timestamptz, timestamptz, uuid) is
  'Server only. Per account over [p_from, p_to): credits granted and spent, revenue (what grants recorded as paid), cost (what usage recorded as costing you) and margin = revenue - cost, in micros. Highest margin first.';
revoke all on function public.creditkit_account_margin(timestamptz, timestamptz, uuid) from public, anon, authenticated;
grant execute on function public.creditkit_account_margin(timestamptz, timestamptz, uuid) to service_role;

create or replace function public.creditkit_usage_series(
  p_from timestamptz,
  p_to timestamptz,
  p_account_id uuid default null,
  p_event text default null)
returns table (day date, event text, calls bigint, credits bigint, cost_micros bigint)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_period(p_from, p_to);
  perform creditkit.check_request(null, p_event, null, p_from);
  return query
    select (l.created_at at time zone 'UTC')::date, l.event, count(*)::bigint,
           (-sum(l.amount))::bigint, coalesce(sum(l.cost_micros), 0)::bigint
      from creditkit.ledger l
     where l.kind = 'consume' and l.unit = 'credits' and l.created_at >= p_from and l.created_at < p_to
       and (p_account_id is null or l.account_id = p_account_id)
       and (p_event is null or l.event = p_event)
     group by 1, 2
     order by 1, 2;
end;
$$;
comment on function public.creditkit_usage_series(timestamptz, timestamptz, uuid, text) is
  'Server only. Spending per UTC day and event over [p_from, p_to): calls, credits, cost in micros. Optionally for one account or event.';
revoke all on function public.creditkit_usage_series(timestamptz, timestamptz, uuid, text) from public, anon, authenticated;
grant execute on function public.creditkit_usage_series(timestamptz, timestamptz, uuid, text) to service_role;

create or replace function public.creditkit_top_events(
  p_from timestamptz,
  p_to timestamptz,
  p_limit integer default 10)
returns table (event text, calls bigint, credits bigint, cost_micros bigint, accounts bigint)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_period(p_from, p_to);
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    raise exception using errcode = 'CK006', message = 'invalid argument: limit must be from 1 to 1000';
  end if;
  return query
    select l.event, count(*)::bigint, (-sum(l.amount))::bigint, coalesce(sum(l.cost_micros), 0)::bigint,
           count(distinct l.account_id)::bigint
      from creditkit.ledger l
     where l.kind = 'consume' and l.unit = 'credits' and l.created_at >= p_from and l.created_at < p_to
     group by l.event
     order by 3 desc, 1
     limit p_limit;
end;
$$;
comment on function public.creditkit_top_events(timestamptz, timestamptz, integer) is
  'Server only. The events that spent the most credits over [p_from, p_to), with calls, cost and distinct accounts.';
revoke all on function public.creditkit_top_events(timestamptz, timestamptz, integer) from public, anon, authenticated;
grant execute on function public.creditkit_top_events(timestamptz, timestamptz, integer) to service_role;

create or replace function public.creditkit_unit_usage(
  p_from timestamptz,
  p_to timestamptz,
  p_account_id uuid default null)
returns table (unit text, calls bigint, spent bigint, overage_credits bigint, granted bigint, revenue_micros bigint,
               cost_micros bigint, margin_micros bigint)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_period(p_from, p_to);
  return query
    with rows as (
      select coalesce(case when l.kind = 'consume' and l.unit = 'credits' then l.metadata ->> 'overage' end, l.unit) as feature,
             (l.kind = 'consume' and l.unit = 'credits' and l.metadata ? 'overage') as overage,
             l.kind, l.amount, l.revenue_micros, l.cost_micros
        from creditkit.ledger l
       where l.created_at >= p_from and l.created_at < p_to
         and (p_account_id is null or l.account_id = p_account_id)
    )
    select r.feature,
           count(*) filter (where r.kind = 'consume')::bigint,
           coalesce(-sum(r.amount) filter (where r.kind = 'consume' and not r.overage), 0)::bigint,
           coalesce(-sum(r.amount) filter (where r.overage), 0)::bigint,
           coalesce(sum(r.amount) filter (where r.kind = 'grant'), 0)::bigint,
           coalesce(sum(r.revenue_micros), 0)::bigint,
           coalesce(sum(r.cost_micros), 0)::bigint,
           (coalesce(sum(r.revenue_micros), 0) - coalesce(sum(r.cost_micros), 0))::bigint
      from rows r
     group by r.feature
     order by r.feature <> 'credits', r.feature;
end;
$$;
comment on function public.creditkit_unit_usage(timestamptz, timestamptz, uuid) is
  'Server only. Per unit over [p_from, p_to) (optionally for one account): usage calls, amount spent of the unit, credits spent as its overage, amount granted, revenue, cost and margin in micros. An overage call counts for the unit it stood in for. Credits first, then by unit.';
revoke all on function public.creditkit_unit_usage(timestamptz, timestamptz, uuid) from public, anon, authenticated;
grant execute on function public.creditkit_unit_usage(timestamptz, timestamptz, uuid) to service_role;

create or replace function public.creditkit_credits_outstanding(p_now timestamptz default now())
returns table (category text, credits bigint, accounts bigint)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_request(null, null, null, p_now);
  return query
    with b as (
      select g.account_id, g.category, g.expires_at,
             (g.remaining - least(g.remaining, greatest(a.undrawn - (sum(g.remaining) over w - g.remaining), 0)))::bigint as remaining
        from creditkit.grants g
        join creditkit.accounts a on a.id = g.account_id and a.unit = g.unit
       where g.live and g.unit = 'credits'
      window w as (partition by g.account_id order by g.expires_at, g.priority desc, g.created_at, g.id
                   rows between unbounded preceding and current row)
    )
    select b.category, sum(b.remaining)::bigint, count(distinct b.account_id)::bigint
      from b
     where b.remaining > 0 and (b.expires_at is null or b.expires_at > p_now)
     group by b.category
     order by 1;
end;
$$;
comment on function public.creditkit_credits_outstanding(timestamptz) is
  'Server only. The liability: credits still spendable at p_now by category (purchased credits are the ones you owe service for), and how many accounts hold them. Expired credit is excluded even if not yet booked.';
revoke all on function public.creditkit_credits_outstanding(timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_credits_outstanding(timestamptz) to service_role;

create or replace function public.creditkit_accounts_per_plan()
returns table (plan_id text, plan_name text, accounts bigint)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform creditkit.assert_server_caller();
  -- The plan in force as creditkit.effective_plan decides it (a live subscription's plan, else the
  -- default plan), as one join of the accounts and their subscriptions rather than a call per
  -- account: on Citus a call that reads a distributed table inside a statement sent to a shard is
  -- refused (docs/citus.md F7), and the join stays on each account's shard.
  return query
    with per_account as (
      select coalesce(s.plan_id, (select d.id from creditkit.plans d where d.is_default)) as plan_id
        from creditkit.accounts a
        left join creditkit.subscriptions s
          on s.account_id = a.id and s.status in ('active', 'trialing', 'past_due')
       where a.unit = 'credits'
    )
    select p.id, p.name, count(e.plan_id)::bigint
      from creditkit.plans p
      left join per_account e on e.plan_id = p.id
     group by p.id, p.name
     order by 3 desc, 1;
end;
$$;
comment on function public.creditkit_accounts_per_plan() is
  'Server only. Accounts per plan in force (a live subscription''s plan, else the default plan).';
revoke all on function public.creditkit_accounts_per_plan() from public, anon, authenticated;
grant execute on function public.creditkit_accounts_per_plan() to service_role;

create or replace function public.creditkit_mrr()
returns table (currency text, mrr bigint, subscriptions bigint)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform creditkit.assert_server_caller();
  -- Active and past_due subscriptions pay; trials and cancellations do not. Normalised to a
  -- month: a year is 12 months, a week 52/12 of a month, a day 365/12.
  return query
    select p.currency,
           round(sum(p.price_amount * case p.period when 'month' then 1.0 when 'year' then 1.0 / 12
                                                    when 'week' then 52.0 / 12 when 'day' then 365.0 / 12 end))::bigint,
           count(*)::bigint
      from creditkit.subscriptions s
      join creditkit.plans p on p.id = s.plan_id
     where s.status in ('active', 'past_due') and p.price_amount > 0
     group by p.currency
     order by 1;
end;
$$;
comment on function public.creditkit_mrr() is
  'Server only. Monthly recurring revenue by currency, in the currency''s minor unit (cents): paying subscriptions (active, past_due) times their plan price, normalised to a month.';
revoke all on function public.creditkit_mrr() from public, anon, authenticated;
grant execute on function public.creditkit_mrr() to service_role;

-- ---------------------------------------------------------------------------------------------
-- Restated for Citus (issue 25, docs/citus.md F3, F5, F7), the same behaviour on Postgres:
-- effective_plan, refresh_due_at and expire_holds are plpgsql instead of SQL (Citus cannot plan a
-- SQL function's parameters); settle and lock_hold find the hold's account without a lock and
-- lock the account by its id, and settle and release change the hold by its whole key (one
-- shard); the sweep picks its candidates without a lock and locks each by its id (skip locked);
-- accounts_per_plan counts the plan in force with a join instead of a call per account.
-- ---------------------------------------------------------------------------------------------

-- The plan an account is on for features and analytics: its subscription's plan while the
-- subscription is live (active, trialing, past_due), otherwise the default plan. plpgsql, not SQL:
-- Citus cannot plan a SQL function's parameters in a query that reads a distributed table beside
-- a reference table (docs/citus.md, F3); plpgsql hands it the value.
create or replace function creditkit.effective_plan(p_account_id uuid)
returns creditkit.plans
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
  v_plan creditkit.plans;
begin
  select p.* into v_plan
    from creditkit.plans p
   where p.id = coalesce(
           (select s.plan_id from creditkit.subscriptions s
             where s.account_id = p_account_id and s.status in ('active', 'trialing', 'past_due')),
           (select d.id from creditkit.plans d where d.is_default));
  return v_plan;
end;
$$;
comment on function creditkit.effective_plan(uuid) is
  'The plan in force for an account: its live subscription''s plan, else the default plan.';
revoke all on function creditkit.effective_plan(uuid) from public, anon, authenticated, service_role;
grant execute on function creditkit.effective_plan(uuid) to authenticated, service_role;

-- Frees the credit of the (account, unit)'s open holds that expired by p_now. The caller holds the lock.
-- plpgsql, not SQL, for Citus (docs/citus.md, F3).
create or replace function creditkit.expire_holds(p_account_id uuid, p_unit text, p_now timestamptz)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
  with expired as (
    update creditkit.holds h
       set status = 'expired', resolved_at = p_now
     where h.account_id = p_account_id and h.unit = p_unit and h.status = 'open' and h.expires_at <= p_now
    returning h.amount
  )
  update creditkit.accounts a
     set held = a.held - (select coalesce(sum(e.amount), 0) from expired e)
   where a.id = p_account_id and a.unit = p_unit;
end;
$$;
comment on function creditkit.expire_holds(uuid, text, timestamptz) is 'Marks open holds past their expiry as expired and frees their credit.';
revoke all on function creditkit.expire_holds(uuid, text, timestamptz) from public, anon, authenticated, service_role;

-- Locks the hold's account and returns the hold as it is under that lock. CK011 if unknown. The
-- hold is found by its id without a lock, then the account is locked by its id (a hold never
-- changes account): on Citus, one shard is locked (docs/citus.md, F5).
create or replace function creditkit.lock_hold(p_hold_id bigint, p_now timestamptz)
returns creditkit.holds
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_account_id uuid;
  v_unit text;
  v_hold creditkit.holds;
begin
  perform creditkit.check_request(null, null, null, p_now);
  select h.account_id, h.unit into v_account_id, v_unit from creditkit.holds h where h.id = p_hold_id;
  if not found then
    raise exception using errcode = 'CK011', message = format('unknown hold: %s', coalesce(p_hold_id::text, 'NULL')),
      detail = jsonb_build_object('hold_id', p_hold_id)::text;
  end if;
  perform creditkit.lock_account(v_account_id, v_unit, p_now);  -- books expiry of this hold if it is due
  select h.* into v_hold from creditkit.holds h where h.id = p_hold_id and h.account_id = v_account_id;
  return v_hold;
end;
$$;
comment on function creditkit.lock_hold(bigint, timestamptz) is 'Locks a hold''s (account, unit) row (booking what is due) and returns the hold.';
revoke all on function creditkit.lock_hold(bigint, timestamptz) from public, anon, authenticated, service_role;

-- Security definer: writes holds, accounts and the ledger; service_role only. When nothing is due
-- and the hold is open, one UPDATE frees the reserve and spends the charge (counted in `undrawn`,
-- like a consume); otherwise the slow path books what is due first. Both share the charge rule.
create or replace function public.creditkit_settle(
  p_hold_id bigint,
  p_actual bigint,
  p_cost_micros bigint default null,
  p_metadata jsonb default null,
  p_now timestamptz default now(),
  out charged bigint,
  out shortfall bigint,
  out balance bigint,
  out transaction_id bigint)
returns record
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_hold creditkit.holds;
  v_account_id uuid;
  v_unit text;
  v_metadata jsonb;
  v_balance bigint;
  v_held bigint;
  v_due_at timestamptz;
  v_other_held bigint;
  v_entry creditkit.ledger;
  v_fast boolean := false;
begin
  -- One test for everything a plain call does not have, then the checks in their usual order.
  if current_setting('role', true) in ('anon', 'authenticated') or auth.role() in ('anon', 'authenticated')
     or p_actual is null or p_actual < 0 or p_actual > 9007199254740991
     or p_cost_micros < 0 or p_cost_micros > 9007199254740991
     or p_metadata is not null or p_now is null or not isfinite(p_now) then
    perform creditkit.assert_server_caller();
    if p_actual is null or p_actual < 0 or p_actual > 9007199254740991 then
      raise exception using errcode = 'CK001',
        message = format('invalid amount: %s (the actual amount is an integer from 0 to 9007199254740991)', coalesce(p_actual::text, 'NULL'));
    end if;
    perform creditkit.check_money(p_cost_micros);
    v_metadata := creditkit.check_request(null, null, p_metadata, p_now);
  end if;

  -- Fast path: find the hold's account (without a lock: a hold never changes account), lock that
  -- account by its id, then read the hold under the lock (a resolution that committed while this
  -- call waited is seen). It serves an open, unexpired hold when nothing is due on the account.
  -- (Locking by id, not by a subquery over holds, keeps the lock on one shard on Citus: F5.)
  select h.account_id, h.unit into v_account_id, v_unit from creditkit.holds h where h.id = p_hold_id;
  if found then
    select a.balance, a.held, a.due_at into v_balance, v_held, v_due_at
      from creditkit.accounts a
     where a.id = v_account_id and a.unit = v_unit
       for update;
    if found and (v_due_at is null or v_due_at > p_now) then
      select h.* into v_hold from creditkit.holds h where h.id = p_hold_id and h.account_id = v_account_id;
      v_fast := coalesce(v_hold.status = 'open' and v_hold.expires_at > p_now, false);
    end if;
  end if;

  if not v_fast then
    -- Slow path (unknown hold, something due, a hold not open or past its expiry).
    v_hold := creditkit.lock_hold(p_hold_id, p_now);
    if v_hold.status = 'settled' and v_hold.settled_amount = p_actual then
      -- A retry of the same settle: the first result.
      charged := v_hold.charged;
      shortfall := p_actual - v_hold.charged;
      transaction_id := v_hold.transaction_id;
      balance := creditkit.spendable(v_hold.account_id, v_hold.unit);
      return;
    elsif v_hold.status <> 'open' then
      raise exception using errcode = 'CK012', message = format('hold %s is already %s', v_hold.id, v_hold.status),
        detail = jsonb_build_object('hold_id', v_hold.id, 'status', v_hold.status)::text;
    end if;
    select a.balance, a.held into v_balance, v_held from creditkit.accounts a
     where a.id = v_hold.account_id and a.unit = v_hold.unit;
  end if;

  -- The charge rule: up to the reserve as far as the balance allows; above it, the whole
  -- actual amount only if the credit not held by other holds covers it.
  v_other_held := v_held - v_hold.amount;
  charged := least(p_actual, v_hold.amount);
  if p_actual > v_hold.amount and v_balance - v_other_held >= p_actual then
    charged := p_actual;
  end if;
  charged := least(charged, v_balance);
  shortfall := p_actual - charged;
  if charged > 0 then
    -- the consume row's metadata
    v_metadata := v_hold.metadata || coalesce(v_metadata, '{}'::jsonb)
                  || jsonb_build_object('hold_id', v_hold.id, 'reserved', v_hold.amount, 'actual', p_actual);
  end if;

  if v_fast then
    -- One UPDATE frees the reserve and spends the charge, counted in undrawn as the consume fast
    -- path counts it (the buckets are drawn at the next lock_account); one ledger row records it.
    update creditkit.accounts a
       set balance = a.balance - creditkit_settle.charged,
           undrawn = a.undrawn + creditkit_settle.charged,
           held = a.held - v_hold.amount,
           version = a.version + case when creditkit_settle.charged > 0 then 1 else 0 end
     where a.id = v_hold.account_id and a.unit = v_hold.unit
    returning a.balance, greatest(a.balance - a.held, 0) into v_balance, balance;
    if charged > 0 then
      insert into creditkit.ledger (account_id, kind, amount, balance_after, event, cost_micros, metadata, created_at, unit)
      values (v_hold.account_id, 'consume', -charged, v_balance, v_hold.event, p_cost_micros, v_metadata, p_now, v_hold.unit)
      returning id into transaction_id;
    end if;
  else
    update creditkit.accounts a set held = a.held - v_hold.amount where a.id = v_hold.account_id and a.unit = v_hold.unit;
    if charged > 0 then
      -- '-infinity': credit that expired while this hold covered it is still payable to it, and
      -- in spend order (soonest expiry first) it is drawn first.
      perform creditkit.draw_down(v_hold.account_id, v_hold.unit, charged, '-infinity');
      v_entry := creditkit.append_entry(v_hold.account_id, v_hold.unit, 'consume', -charged, null, v_hold.event, null,
                                        v_metadata, p_now, null, p_cost_micros, null);
      transaction_id := v_entry.id;
    end if;
  end if;
  update creditkit.holds h
     set status = 'settled', resolved_at = p_now, settled_amount = p_actual, charged = creditkit_settle.charged,
         transaction_id = creditkit_settle.transaction_id
   where h.id = v_hold.id and h.account_id = v_hold.account_id;
  if not v_fast then
    -- expired credit this hold covered and did not charge expires now
    perform creditkit.book_expired(v_hold.account_id, v_hold.unit, p_now);
    balance := creditkit.spendable(v_hold.account_id, v_hold.unit);
  end if;
end;
$$;
comment on function public.creditkit_settle(bigint, bigint, bigint, jsonb, timestamptz) is
  'Server only. Settles a hold with the actual amount: charges it (one consume row) and frees the rest of the reserve. Above the reserve, the actual amount is charged only if the unreserved balance covers it; otherwise the reserve is charged and the rest reported as shortfall. Settling again with the same amount returns the first result; a hold already released or expired raises CK012.';
revoke all on function public.creditkit_settle(bigint, bigint, bigint, jsonb, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_settle(bigint, bigint, bigint, jsonb, timestamptz) to service_role;

-- Security definer: writes holds and accounts; service_role only.
create or replace function public.creditkit_release(
  p_hold_id bigint,
  p_now timestamptz default now(),
  out status text,
  out balance bigint)
returns record
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_hold creditkit.holds;
begin
  perform creditkit.assert_server_caller();
  v_hold := creditkit.lock_hold(p_hold_id, p_now);
  if v_hold.status = 'open' then
    update creditkit.holds h set status = 'released', resolved_at = p_now
     where h.id = v_hold.id and h.account_id = v_hold.account_id;
    update creditkit.accounts a set held = a.held - v_hold.amount where a.id = v_hold.account_id and a.unit = v_hold.unit;
    -- expired credit this hold covered expires now
    perform creditkit.book_expired(v_hold.account_id, v_hold.unit, p_now);
    status := 'released';
  elsif v_hold.status in ('released', 'expired') then
    status := v_hold.status;  -- already free: releasing again changes nothing
  else
    raise exception using errcode = 'CK012', message = format('hold %s is already %s', v_hold.id, v_hold.status),
      detail = jsonb_build_object('hold_id', v_hold.id, 'status', v_hold.status)::text;
  end if;
  balance := creditkit.spendable(v_hold.account_id, v_hold.unit);
end;
$$;
comment on function public.creditkit_release(bigint, timestamptz) is
  'Server only. Frees a hold''s credit without charging (e.g. the model call failed). Releasing a released or expired hold changes nothing; a settled one raises CK012.';
revoke all on function public.creditkit_release(bigint, timestamptz) from public, anon, authenticated;
grant execute on function public.creditkit_release(bigint, timestamptz) to service_role;

-- accounts.due_at is computed here and nowhere else, so no path can forget a kind of due work.
-- plpgsql, not SQL, for Citus (docs/citus.md, F3).
create or replace function creditkit.refresh_due_at(p_account_id uuid, p_unit text)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
  update creditkit.accounts a
     set due_at = least(
           (select min(g.expires_at) from creditkit.grants g
             where g.account_id = p_account_id and g.unit = p_unit and g.remaining > 0),
           (select s.renews_at from creditkit.subscriptions s where s.account_id = p_account_id and p_unit = 'credits'),
           (select al.renews_at from creditkit.allowances al where al.account_id = p_account_id and al.unit = p_unit),
           (select min(h.expires_at) from creditkit.holds h
             where h.account_id = p_account_id and h.unit = p_unit and h.status = 'open'))
   where a.id = p_account_id and a.unit = p_unit;
end;
$$;
comment on function creditkit.refresh_due_at(uuid, text) is
  'Sets due_at of an (account, unit) row to the earliest time anything is due on it: bucket expiry, renewal or hold expiry.';
revoke all on function creditkit.refresh_due_at(uuid, text) from public, anon, authenticated, service_role;

-- Security definer: books expired credit (writes); service_role only.
create or replace function public.creditkit_book_expired(
  p_now timestamptz default now(),
  p_limit integer default 1000,
  p_unit text default 'credits')
returns integer
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_account_id uuid;
  v_count integer := 0;
begin
  perform creditkit.assert_server_caller();
  perform creditkit.check_request(null, null, null, p_now);
  if p_limit is null or p_limit < 1 or p_limit > 100000 then
    raise exception using errcode = 'CK006', message = 'invalid argument: limit must be from 1 to 100000';
  end if;
  perform creditkit.check_unit(p_unit);
  -- The candidates are picked without a lock, then each row is locked by its id, skipping one
  -- another call holds (it books what is due itself), and only if it is still due: on Citus a
  -- FOR UPDATE over rows of every shard is refused, one account's row is on one shard
  -- (docs/citus.md, F5).
  for v_account_id in
    select a.id from creditkit.accounts a
     where a.due_at <= p_now and a.unit = p_unit
     order by a.due_at
     limit p_limit
  loop
    perform from creditkit.accounts a
     where a.id = v_account_id and a.unit = p_unit and a.due_at <= p_now
       for update skip locked;
    if found then
      perform creditkit.book_due(v_account_id, p_unit, p_now);
      v_count := v_count + 1;
    end if;
  end loop;
  return v_count;
end;
$$;
comment on function public.creditkit_book_expired(timestamptz, integer, text) is
  'Server only, optional. Books what is due in p_unit (default credits: expired credit, renewals and expired holds) for up to p_limit accounts and returns how many it visited. Nothing depends on it: every touch books what is due.';
revoke all on function public.creditkit_book_expired(timestamptz, integer, text) from public, anon, authenticated;
grant execute on function public.creditkit_book_expired(timestamptz, integer, text) to service_role;

-- Security definer: writes the plan limits, which no client role may write; service_role only.
create or replace function public.creditkit_set_plan_limit(
  p_plan_id text,
  p_unit text,
  p_allowance bigint,
  p_period text default 'month',
  p_renewal text default 'reset',
  p_rollover_cap bigint default null)
returns jsonb
language plpgsql
volatile
security definer
set search_path = ''
set lock_timeout = '3s'
set enable_seqscan = off
as $$
declare
  v_limit creditkit.plan_limits;
begin
  perform creditkit.assert_server_caller();
  if not exists (select from creditkit.plans p where p.id = p_plan_id) then
    raise exception using errcode = 'CK009', message = format('unknown plan: %s', coalesce(p_plan_id, 'NULL')),
      detail = jsonb_build_object('plan_id', p_plan_id)::text;
  end if;
  perform creditkit.check_unit(p_unit);
  if p_unit = 'credits' then
    raise exception using errcode = 'CK006',
      message = 'invalid argument: the credits allowance is the plan''s own (creditkit_upsert_plan)';
  end if;
  if p_allowance is null then
    -- No limit: accounts stop renewing it at their next period; what was granted runs to its end.
    delete from creditkit.plan_limits l where l.plan_id = p_plan_id and l.unit = p_unit;
    return null;
  end if;
  if p_allowance < 0 or p_allowance > 9007199254740991 or p_rollover_cap < 0 or p_rollover_cap > 9007199254740991 then
    raise exception using errcode = 'CK001', message = 'invalid amount: allowance and rollover cap are integers from 0 to 9007199254740991';
  end if;
  if p_period is null or p_period not in ('day', 'week', 'month', 'year')
     or p_renewal is null or p_renewal not in ('reset', 'rollover') then
    raise exception using errcode = 'CK006', message = 'invalid argument: period is day|week|month|year, renewal is reset|rollover';
  end if;
  -- Periods are counted from each allowance's anchor in the limit's period; changing the period
  -- under running allowances would renumber them. (The plan in force by effective_plan's rule, as a
  -- join, and select 1: on Citus a call per row that reads a distributed table is refused inside a
  -- statement on a shard (F7), and a subquery without a column fails when Citus plans it in steps.)
  if exists (select 1 from creditkit.plan_limits l where l.plan_id = p_plan_id and l.unit = p_unit and l.period <> p_period)
     and exists (select 1 from creditkit.allowances al
                   left join creditkit.subscriptions s
                     on s.account_id = al.account_id and s.status in ('active', 'trialing', 'past_due')
                  where al.unit = p_unit
                    and coalesce(s.plan_id, (select d.id from creditkit.plans d where d.is_default)) = p_plan_id) then
    raise exception using errcode = 'CK006',
      message = 'invalid argument: the period of a limit that accounts are renewing cannot change; remove it (NULL allowance) first';
  end if;
  insert into creditkit.plan_limits as l (plan_id, unit, allowance, period, renewal, rollover_cap)
  values (p_plan_id, p_unit, p_allowance, p_period, p_renewal, p_rollover_cap)
  on conflict (plan_id, unit) do update
     set allowance = excluded.allowance, period = excluded.period, renewal = excluded.renewal,
         rollover_cap = excluded.rollover_cap
  returning l.* into v_limit;
  -- Rows of the unit that run no allowance yet look for it at their next touch (renew_period).
  update creditkit.accounts a set due_at = '-infinity'
   where a.unit = p_unit
     and not exists (select from creditkit.allowances al where al.account_id = a.id and al.unit = a.unit);
  return to_jsonb(v_limit);
end;
$$;
comment on function public.creditkit_set_plan_limit(text, text, bigint, text, text, bigint) is
  'Server only. Sets a plan''s limit for a metered unit other than credits: p_allowance per period (0: the unit is available but none is included), reset or rolled over with a cap. A NULL allowance removes the limit (returns NULL). A change applies from each account''s next period, as a plan''s credits allowance does; a new limit starts on the unit''s next touch of accounts that hold none. Naturally idempotent.';
revoke all on function public.creditkit_set_plan_limit(text, text, bigint, text, text, bigint) from public, anon, authenticated;
grant execute on function public.creditkit_set_plan_limit(text, text, bigint, text, text, bigint) to service_role;

-- The anchor a unit's plan-limit periods count from: the live subscription's to that plan, else
-- p_now (an account on the default plan without one counts from when its row opens). plpgsql, not
-- SQL: Citus cannot plan a SQL function's parameters in a read of a distributed table (docs/citus.md,
-- F3).
create or replace function creditkit.allowance_anchor(p_account_id uuid, p_plan_id text, p_now timestamptz)
returns timestamptz
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
  return coalesce((select s.anchor from creditkit.subscriptions s
                    where s.account_id = p_account_id and s.plan_id = p_plan_id
                      and s.status in ('active', 'trialing', 'past_due')), p_now);
end;
$$;
comment on function creditkit.allowance_anchor(uuid, text, timestamptz) is
  'Where a unit''s plan-limit periods count from: the live subscription''s anchor on that plan, else p_now.';
revoke all on function creditkit.allowance_anchor(uuid, text, timestamptz) from public, anon, authenticated, service_role;
grant execute on function creditkit.allowance_anchor(uuid, text, timestamptz) to authenticated, service_role;

select creditkit.apply_settings();
