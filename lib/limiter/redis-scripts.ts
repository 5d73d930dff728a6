/**
 * The Redis limiter's state and the Lua script that changes it. The script
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
 * A release, a departure, a grant from the queue or an expiry is published on
 * `channel`, so every gateway polls again at once instead of at its next tick.
 */

export interface LimiterKeys {
  /** KEYS for the script, in the order it expects. */
  keys: [leases: string, queue: string, alive: string, seq: string];
  channel: string;
}

export function limiterKeys(prefix: string): LimiterKeys {
  const tag = `{${prefix}}`;
  return { keys: [`${tag}:leases`, `${tag}:queue`, `${tag}:alive`, `${tag}:seq`], channel: `${prefix}:changed` };
}

/**
 * sync(ttl_ms, max, max_queue, channel, instance, n_forget, n_held, n_waiting, ids...)
 *   → {in_flight, queued, result per waiting id, then per newcomer}
 * One gateway's round trip: forget what it let go (released slots, waiters that
 * left), renew the leases it holds (re-adding any Redis lost), heartbeat its
 * waiters, and grant those whose place fits in the free slots. The ids after the
 * waiting ones are newcomers, who join the end of the line: a newcomer is granted
 * at once only if everyone already queued fits in the free slots too, so it never
 * overtakes a waiter. A result is 0 when granted, -1 when a newcomer finds
 * max_queue waiting, else its place in line (1 = next).
 */
export const SYNC = `
local leases, queue, alive, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ttl, max, max_queue = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local held = 9 + tonumber(ARGV[6])
local waiting = held + tonumber(ARGV[7])
local newcomers = waiting + tonumber(ARGV[8])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
-- lapsed leases, and the queue entries of waiters whose owner stopped polling
local changed = redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', alive, '-inf', now)) do
  changed = changed + redis.call('ZREM', queue, id)
end
redis.call('ZREMRANGEBYSCORE', alive, '-inf', now)
for i = 9, held - 1 do
  changed = changed + redis.call('ZREM', leases, ARGV[i]) + redis.call('ZREM', queue, ARGV[i])
  redis.call('ZREM', alive, ARGV[i])
end
for i = held, waiting - 1 do
  redis.call('ZADD', leases, now + ttl, ARGV[i])
end
local reply = {0, 0}
for i = waiting, #ARGV do
  local id = ARGV[i]
  local rank = redis.call('ZRANK', queue, id)
  -- not in line: a newcomer, or its entry was lost (Redis restarted, or the owner missed its heartbeats)
  local outside = not rank
  if outside then rank = redis.call('ZCARD', queue) end
  if redis.call('ZSCORE', leases, id) then
    -- granted by an earlier call whose answer was lost: keep it
    redis.call('ZADD', leases, now + ttl, id)
    reply[#reply + 1] = 0
  elseif rank < max - redis.call('ZCARD', leases) then
    changed = changed + redis.call('ZREM', queue, id)
    redis.call('ZREM', alive, id)
    redis.call('ZADD', leases, now + ttl, id)
    reply[#reply + 1] = 0
  elseif i >= newcomers and rank >= max_queue then
    reply[#reply + 1] = -1
  else
    if outside then redis.call('ZADD', queue, redis.call('INCR', seq), id) end
    redis.call('ZADD', alive, now + ttl, id)
    reply[#reply + 1] = rank + 1
  end
end
if changed > 0 then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
reply[1] = redis.call('ZCARD', leases)
reply[2] = redis.call('ZCARD', queue)
return reply
`;
