/**
 * The Redis limiter's state and the two Lua scripts that change it. Each script
 * runs atomically inside Redis, so there is no check-then-set race between
 * gateways, and reads Redis's own clock (TIME), so the gateways' clocks never
 * need to agree.
 *
 * Keys (one hash tag, so they share a Redis Cluster slot):
 * - `leases`  sorted set: slot id → expiry (ms, Redis time). A slot counts
 *   while its lease lives; its owner renews it, and a dead owner's lease lapses.
 * - `queue`   sorted set: waiter id → arrival number (from `seq`): the FIFO.
 * - `alive`   sorted set: waiter id → expiry of its owner's last heartbeat; a
 *   queue entry whose owner stopped polling is dropped.
 * - `seq`     counter giving arrival numbers.
 * A release, a departure, a grant or an expiry is published on `channel`, so
 * every gateway polls again at once instead of at its next tick.
 */
import { script } from "../redis-connection";

export interface LimiterKeys {
  /** KEYS for both scripts, in the order they expect. */
  keys: [leases: string, queue: string, alive: string, seq: string];
  channel: string;
}

export function limiterKeys(prefix: string): LimiterKeys {
  const tag = `{${prefix}}`;
  return { keys: [`${tag}:leases`, `${tag}:queue`, `${tag}:alive`, `${tag}:seq`], channel: `${prefix}:changed` };
}

/** Shared by both scripts: Redis's clock, and the removal of lapsed leases and dead waiters. */
const PRELUDE = `
local leases, queue, alive, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function purge(now)
  local removed = redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
  local dead = redis.call('ZRANGEBYSCORE', alive, '-inf', now)
  for _, id in ipairs(dead) do redis.call('ZREM', queue, id) end
  if #dead > 0 then redis.call('ZREMRANGEBYSCORE', alive, '-inf', now) end
  return removed + #dead
end
`;

/**
 * enter(id, max, max_queue, ttl_ms, channel, instance) → {position, in_flight, queued}
 * position 0: granted (a lease is taken); -1: the queue is full; n > 0: queued at n.
 * A newcomer is granted at once only if everyone already queued fits in the
 * free slots too, so it never overtakes a waiter.
 */
export const ENTER = script(`${PRELUDE}
local id, max, max_queue, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
if purge(now) > 0 then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
local in_flight = redis.call('ZCARD', leases)
local queued = redis.call('ZCARD', queue)
if queued < max - in_flight then
  redis.call('ZADD', leases, now + ttl, id)
  return {0, in_flight + 1, queued}
end
if queued >= max_queue then return {-1, in_flight, queued} end
redis.call('ZADD', queue, redis.call('INCR', seq), id)
redis.call('ZADD', alive, now + ttl, id)
return {queued + 1, in_flight, queued + 1}
`);

/**
 * sync(ttl_ms, max, channel, instance, n_forget, n_held, n_waiting, ids...)
 *   → {in_flight, queued, result per waiting id}
 * One gateway's periodic round trip: forget what it let go (released slots,
 * waiters that left), renew the leases it holds (re-adding any Redis lost),
 * heartbeat its waiters and grant those whose place fits in the free slots.
 * A waiter's result is 0 when granted, else its position (1 = next).
 */
export const SYNC = script(`${PRELUDE}
local ttl, max = tonumber(ARGV[1]), tonumber(ARGV[2])
local n_forget, n_held, n_waiting = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local now = now_ms()
local changed = purge(now)
local i = 8
for _ = 1, n_forget do
  local id = ARGV[i]
  changed = changed + redis.call('ZREM', leases, id) + redis.call('ZREM', queue, id)
  redis.call('ZREM', alive, id)
  i = i + 1
end
for _ = 1, n_held do
  redis.call('ZADD', leases, now + ttl, ARGV[i])
  i = i + 1
end
local reply = {0, 0}
for _ = 1, n_waiting do
  local id = ARGV[i]
  i = i + 1
  local result
  if redis.call('ZSCORE', leases, id) then
    -- granted by an earlier call whose answer was lost: keep it
    redis.call('ZADD', leases, now + ttl, id)
    result = 0
  else
    local rank = redis.call('ZRANK', queue, id)
    if not rank then
      -- its entry was lost (Redis restarted, or the owner missed its heartbeats): back in line
      redis.call('ZADD', queue, redis.call('INCR', seq), id)
      rank = redis.call('ZRANK', queue, id)
    end
    if rank < max - redis.call('ZCARD', leases) then
      redis.call('ZREM', queue, id)
      redis.call('ZREM', alive, id)
      redis.call('ZADD', leases, now + ttl, id)
      changed = changed + 1
      result = 0
    else
      redis.call('ZADD', alive, now + ttl, id)
      result = rank + 1
    end
  end
  reply[#reply + 1] = result
end
if changed > 0 then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
reply[1] = redis.call('ZCARD', leases)
reply[2] = redis.call('ZCARD', queue)
return reply
`);
