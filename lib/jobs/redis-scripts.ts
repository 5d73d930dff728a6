/**
 * The Redis job store's Lua scripts (lib/jobs/redis-store.ts): each change
 * that must be whole, or once, happens in one script, so two gateways never
 * interleave it.
 */

/** Makes a queued job, once for an idempotency key. Returns [id, 1] for a new one, [known id, 0] for a replay. */
export const CREATE = `
local idem = KEYS[2]
if idem ~= "" then
  local known = redis.call("GET", idem)
  if known then return {known, 0} end
end
local id = ARGV[1]
redis.call("HSET", KEYS[1], "id", id, "owner", ARGV[2], "status", "queued", "created_at", ARGV[3], "input", ARGV[4],
  "input_hash", ARGV[5], "idempotency_key", ARGV[6], "runner", ARGV[7], "started_at", "", "completed_at", "", "output", "", "error", "", "image", "")
if idem ~= "" then redis.call("SET", idem, id) end
local seq = redis.call("INCR", KEYS[5])
redis.call("ZADD", KEYS[3], seq, id)
redis.call("ZREMRANGEBYRANK", KEYS[3], 0, -1 - tonumber(ARGV[8]))
redis.call("ZADD", KEYS[4], seq, id)
return {id, 1}
`;

/**
 * Moves a job on, refused (0) once it has ended. ARGV: ttl ms, the idempotency
 * key's name or "", then field, value pairs. An end takes the job out of the
 * active set and sets its keys to expire; an image's owner is noted.
 */
export const UPDATE = `
local finished = {succeeded = true, failed = true, canceled = true}
local status = redis.call("HGET", KEYS[1], "status")
if not status or finished[status] then return 0 end
redis.call("HSET", KEYS[1], unpack(ARGV, 4))
if finished[redis.call("HGET", KEYS[1], "status")] then
  redis.call("ZREM", KEYS[3], redis.call("HGET", KEYS[1], "id"))
  local ttl = tonumber(ARGV[1])
  redis.call("PEXPIRE", KEYS[1], ttl)
  redis.call("PEXPIRE", KEYS[2], ttl)
  if ARGV[2] ~= "" then redis.call("PEXPIRE", ARGV[2], ttl) end
end
if ARGV[3] ~= "" then
  local owners = KEYS[4] .. ARGV[3]
  redis.call("SADD", owners, redis.call("HGET", KEYS[1], "owner"))
  redis.call("PEXPIRE", owners, tonumber(ARGV[1]))
end
return 1
`;

/** Appends an event and publishes "seq:data"; with a limit (>= 0), one past it is not kept (0) but still heard live ("0:data"). */
export const APPEND = `
local limit = tonumber(ARGV[2])
if limit >= 0 and redis.call("LLEN", KEYS[1]) >= limit then
  redis.call("PUBLISH", ARGV[3], "0:" .. ARGV[1])
  return 0
end
local seq = redis.call("RPUSH", KEYS[1], ARGV[1])
redis.call("PUBLISH", ARGV[3], seq .. ":" .. ARGV[1])
return seq
`;

/** Takes a job whose runner is gone: a queued one becomes ours (1), a running one is marked failed (2); else 0. */
export const CLAIM = `
local runner = redis.call("HGET", KEYS[1], "runner")
if runner == false or runner ~= ARGV[1] then return 0 end
if runner ~= "" and redis.call("EXISTS", KEYS[2]) == 1 then return 0 end
local status = redis.call("HGET", KEYS[1], "status")
if status ~= "queued" and status ~= "running" then return 0 end
redis.call("HSET", KEYS[1], "runner", ARGV[2])
if status == "queued" then return 1 end
return 2
`;

/**
 * An image's time in the images set: now, or just after the newest one, so two images kept in
 * the same millisecond still leave in the order they came (a tie would go by hash).
 */
const IMAGE_TIME = `
local function imageTime(images, now)
  local newest = redis.call("ZREVRANGE", images, 0, 0, "WITHSCORES")[2]
  if newest and tonumber(newest) >= tonumber(now) then return tonumber(newest) + 1 end
  return tonumber(now)
end
`;

/** Keeps an image's record once; its bytes are counted then. */
export const PUT_IMAGE = `${IMAGE_TIME}
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
redis.call("HSET", KEYS[1], "sha256", ARGV[1], "content_type", ARGV[2], "bytes", ARGV[3])
redis.call("ZADD", KEYS[2], imageTime(KEYS[2], ARGV[4]), ARGV[1])
redis.call("INCRBY", KEYS[3], ARGV[3])
return 1
`;

/** An image kept already (1) counts as stored now, so it outlives the newest job that has it by JOB_TTL, as it would stored anew. */
export const TOUCH_IMAGE = `${IMAGE_TIME}
if redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
redis.call("ZADD", KEYS[2], "XX", imageTime(KEYS[2], ARGV[1]), ARGV[2])
return 1
`;

/** Drops an image's record (1), once, whoever asks first; its bytes go from the count. */
export const DROP_IMAGE = `
if redis.call("ZREM", KEYS[2], ARGV[1]) == 0 then return 0 end
local bytes = tonumber(redis.call("HGET", KEYS[1], "bytes") or "0")
redis.call("DEL", KEYS[1], KEYS[4])
redis.call("DECRBY", KEYS[3], bytes)
return 1
`;

/** Only while the job is queued: a late place would outlive its start (and recreate an expired record). */
export const SET_PLACE = `
if redis.call("HGET", KEYS[1], "status") ~= "queued" then return 0 end
redis.call("HSET", KEYS[1], "place", ARGV[1])
return 1
`;
