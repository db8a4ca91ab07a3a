"""The Redis job store's Lua scripts: each change of a job's state is one script, so it is atomic.

Read with :mod:`.redis_store`, which runs them; this module only holds their source.
"""

from __future__ import annotations

# Shared by every script: ARGV[1] is the key prefix. Times are the Redis server's, in milliseconds.
_COMMON = r"""
local P = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function is_final(s)
  return s == 'COMPLETED' or s == 'FAILED' or s == 'CANCELLED' or s == 'TIMED_OUT'
end
local function forget(id)
  local size = tonumber(redis.call('HGET', P .. 'sizes', id) or '0')
  redis.call('HDEL', P .. 'sizes', id)
  redis.call('ZREM', P .. 'finished', id)
  redis.call('ZREM', P .. 'refused', id)
  redis.call('ZREM', P .. 'forget_at', id)
  if size ~= 0 then redis.call('HINCRBY', P .. 'stats', 'bytes', -size) end  -- Lua's -0 is no integer to Redis
  redis.call('DEL', P .. 'job:' .. id, P .. 'stream:' .. id)
end
-- Forget the jobs whose time is up: at their ttl or JOB_RETENTION_S after their end, whichever is first (the
-- zset forget_at), so a job whose ttl passed frees its retention slot then, not JOB_RETENTION_S later.
local function prune(now, retention_ms)
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', P .. 'forget_at', '-inf', now)) do forget(old) end
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', P .. 'finished', '-inf', now - retention_ms)) do forget(old) end
end
-- When a job that ended at ``now`` is forgotten: JOB_RETENTION_S later, or at its ttl when sooner.
local function forget_time(J, now, retention_ms)
  local until_ms = now + retention_ms
  local expires = tonumber(redis.call('HGET', J, 'expires') or '0')
  if expires > 0 and expires < until_ms then until_ms = expires end
  return until_ms
end
-- Move a job to a final state once; returns 1 when this call did it (its caller tells the webhook), else 0.
local function finish(id, status, output, err, retention_ms, retain_max, retain_bytes)
  local J = P .. 'job:' .. id
  local S = P .. 'stream:' .. id
  redis.call('ZREM', P .. 'running', id)
  redis.call('LREM', P .. 'queue', 0, id)
  if redis.call('EXISTS', J) == 0 then return 0 end
  if is_final(redis.call('HGET', J, 'status')) then return 0 end
  local now = now_ms()
  local keep = (status == 'FAILED' or status == 'TIMED_OUT') and redis.call('HEXISTS', J, 'input') == 1
  if not keep then redis.call('HDEL', J, 'input') end
  redis.call('HSET', J, 'status', status, 'ended', now)
  redis.call('HDEL', J, 'owner', 'cancel', 'progress')
  if output ~= '' then redis.call('HSET', J, 'output', output) end
  if err ~= '' then redis.call('HSET', J, 'error', err) end
  if status == 'COMPLETED' then
    redis.call('HINCRBY', P .. 'stats', 'completed', 1)
  elseif status == 'FAILED' or status == 'TIMED_OUT' then
    redis.call('HINCRBY', P .. 'stats', 'failed', 1)
  end
  local size = #output + #err + tonumber(redis.call('HGET', J, 'stream_bytes') or '0')
  if keep then size = size + tonumber(redis.call('HGET', J, 'input_size') or '0') end
  redis.call('HSET', J, 'size', size)
  redis.call('HSET', P .. 'sizes', id, size)
  redis.call('HINCRBY', P .. 'stats', 'bytes', size)
  -- Ends keep their order even within one millisecond (a step past the newest end so far): the eviction below
  -- takes the oldest end first.
  local rank = now
  local newest = redis.call('ZRANGE', P .. 'finished', -1, -1, 'WITHSCORES')
  if newest[2] then rank = math.max(now, tonumber(newest[2]) + 1 / 1024) end
  redis.call('ZADD', P .. 'finished', rank, id)
  local until_ms = forget_time(J, now, retention_ms)
  redis.call('PEXPIREAT', J, until_ms)
  redis.call('PEXPIREAT', S, until_ms)
  redis.call('ZADD', P .. 'forget_at', until_ms, id)
  prune(now, retention_ms)
  while true do
    local n = redis.call('ZCARD', P .. 'finished')
    if n <= 1 then break end
    local bytes = tonumber(redis.call('HGET', P .. 'stats', 'bytes') or '0')
    if n <= retain_max and bytes <= retain_bytes then break end
    forget(redis.call('ZRANGE', P .. 'finished', 0, 0)[1])
  end
  return 1
end
-- A job refused before queueing (bad input): FAILED with its error, kept apart from the finished jobs (the zset
-- refused, at most retain_max, oldest forgotten first), so refusals never take a finished job's retention slot.
local function refuse(id, err, retention_ms, retain_max)
  local J = P .. 'job:' .. id
  local now = now_ms()
  redis.call('HSET', J, 'status', 'FAILED', 'ended', now, 'error', err, 'size', #err)
  redis.call('HINCRBY', P .. 'stats', 'failed', 1)
  local until_ms = forget_time(J, now, retention_ms)
  redis.call('PEXPIREAT', J, until_ms)
  redis.call('ZADD', P .. 'forget_at', until_ms, id)
  local rank = now
  local newest = redis.call('ZRANGE', P .. 'refused', -1, -1, 'WITHSCORES')
  if newest[2] then rank = math.max(now, tonumber(newest[2]) + 1 / 1024) end
  redis.call('ZADD', P .. 'refused', rank, id)
  prune(now, retention_ms)
  while redis.call('ZCARD', P .. 'refused') > retain_max do
    forget(redis.call('ZRANGE', P .. 'refused', 0, 0)[1])
  end
  return 1
end
local function limits(i)
  return tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
end
-- A job's tenant may act on it; '' (keys are one tenant) may act on any job.
local function tenant_ok(J, tenant)
  return tenant == '' or redis.call('HGET', J, 'tenant') == tenant
end
"""

# ARGV: P, id, max_open, input json ('' for a refused job), input_size, timeout_s, ttl_ms, webhook, error,
#       retention_ms, retain_max, retain_bytes, tenant ('' for none)
_SUBMIT = _COMMON + r"""
local id = ARGV[2]
local J = P .. 'job:' .. id
local refused = ARGV[4] == ''
if not refused then
  local open = redis.call('LLEN', P .. 'queue') + redis.call('ZCARD', P .. 'running')
  if open >= tonumber(ARGV[3]) then return {-1, open} end
end
local now = now_ms()
redis.call('HSET', J, 'status', 'IN_QUEUE', 'created', now, 'input_size', ARGV[5], 'attempts', 0, 'retries', 0)
if not refused then redis.call('HSET', J, 'input', ARGV[4]) end
if ARGV[6] ~= '' then redis.call('HSET', J, 'timeout_s', ARGV[6]) end
if ARGV[8] ~= '' then redis.call('HSET', J, 'webhook', ARGV[8]) end
if ARGV[13] ~= '' then redis.call('HSET', J, 'tenant', ARGV[13]) end
if ARGV[7] ~= '' then
  local expires = now + tonumber(ARGV[7])
  redis.call('HSET', J, 'expires', expires)
  redis.call('PEXPIREAT', J, expires)
end
if refused then
  local rm, rn = limits(10)
  return {refuse(id, ARGV[9], rm, rn), 0}
end
redis.call('RPUSH', P .. 'queue', id)
return {1, 0}
"""

# ARGV: P, owner, lease_ms. Pops queued ids until one is still queued; returns {id, attempt, input} or {}.
_TAKE = _COMMON + r"""
while true do
  local id = redis.call('LPOP', P .. 'queue')
  if not id then return {} end
  local J = P .. 'job:' .. id
  if redis.call('HGET', J, 'status') == 'IN_QUEUE' then
    local now = now_ms()
    local attempt = redis.call('HINCRBY', J, 'attempts', 1)
    redis.call('HSET', J, 'status', 'IN_PROGRESS', 'started', now, 'owner', ARGV[2], 'worker', ARGV[2],
               'read_at', now)
    redis.call('HDEL', J, 'progress')
    redis.call('ZADD', P .. 'running', now + tonumber(ARGV[3]), id)
    return {id, attempt, redis.call('HGET', J, 'input') or 'null'}
  end
end
"""

# ARGV: P, owner, lease_ms, then id, attempt pairs. Renews the leases this replica still holds; per job:
# 1 held, 2 held and cancel asked, 0 lost (forgotten, or taken back after a lapsed lease).
_WATCH = _COMMON + r"""
local out = {}
local deadline = now_ms() + tonumber(ARGV[3])
for i = 4, #ARGV, 2 do
  local J = P .. 'job:' .. ARGV[i]
  local f = redis.call('HMGET', J, 'owner', 'attempts', 'status', 'cancel')
  if f[1] == ARGV[2] and f[2] == ARGV[i + 1] and f[3] == 'IN_PROGRESS' then
    redis.call('ZADD', P .. 'running', deadline, ARGV[i])
    if f[4] then out[#out + 1] = 2 else out[#out + 1] = 1 end
  else
    out[#out + 1] = 0
  end
end
return out
"""

# ARGV: P, max_attempts, retention_ms, retain_max, retain_bytes. Forgets jobs whose time is up; jobs whose lease
# lapsed go back to the front of the queue, or end FAILED after max_attempts starts, or at once when their stream
# has already handed out pieces (a new run would start the stream over: a reader would get chunk 0 again, spliced
# after the pieces it has); returns {failed ids..., '', requeued ids...}.
_REAP = _COMMON + r"""
local failed, requeued = {}, {}
local rm, rn, rb = limits(3)
local now = now_ms()
prune(now, rm)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'running', '-inf', now)) do
  local J = P .. 'job:' .. id
  local sent = tonumber(redis.call('HGET', J, 'stream_sent') or '0')
  if redis.call('HGET', J, 'status') ~= 'IN_PROGRESS' then
    redis.call('ZREM', P .. 'running', id)
  elseif sent > 0 then
    local err = 'stream: the worker running this job stopped answering (its lease lapsed) after /stream had ' ..
                'handed out ' .. sent .. ' pieces; the job was not run again, as a new run would start the ' ..
                'stream over (use /retry to run it again from the start)'
    if finish(id, 'FAILED', '', err, rm, rn, rb) == 1 then failed[#failed + 1] = id end
  elseif tonumber(redis.call('HGET', J, 'attempts') or '0') >= tonumber(ARGV[2]) then
    local err = 'the worker running this job stopped answering ' .. ARGV[2] ..
                ' times (its lease lapsed; JOB_MAX_ATTEMPTS); the job was not run again'
    if finish(id, 'FAILED', '', err, rm, rn, rb) == 1 then failed[#failed + 1] = id end
  else
    redis.call('ZREM', P .. 'running', id)
    redis.call('HSET', J, 'status', 'IN_QUEUE', 'stream_bytes', 0)
    redis.call('HDEL', J, 'owner', 'started')
    redis.call('DEL', P .. 'stream:' .. id)
    redis.call('LPUSH', P .. 'queue', id)
    requeued[#requeued + 1] = id
  end
end
failed[#failed + 1] = ''
for _, id in ipairs(requeued) do failed[#failed + 1] = id end
return failed
"""

# ARGV: P, id, owner, attempt, status, output json, error, retention_ms, retain_max, retain_bytes.
# The running replica's end of a job: only while it still holds that attempt.
_FINISH_OWNED = _COMMON + r"""
local J = P .. 'job:' .. ARGV[2]
local f = redis.call('HMGET', J, 'owner', 'attempts')
if f[1] ~= ARGV[3] or f[2] ~= ARGV[4] then return 0 end
local rm, rn, rb = limits(8)
return finish(ARGV[2], ARGV[5], ARGV[6], ARGV[7], rm, rn, rb)
"""

# ARGV: P, id, tenant, retention_ms, retain_max, retain_bytes. Returns 0 unknown (or another tenant's);
# 1 cancel asked of its replica; 2 cancelled here (queued; the caller tells the webhook); 3 already final.
_CANCEL = _COMMON + r"""
local J = P .. 'job:' .. ARGV[2]
local status = redis.call('HGET', J, 'status')
if not status or not tenant_ok(J, ARGV[3]) then return 0 end
if status == 'IN_QUEUE' then
  local rm, rn, rb = limits(4)
  finish(ARGV[2], 'CANCELLED', '', '', rm, rn, rb)
  return 2
end
if status == 'IN_PROGRESS' then
  redis.call('HSET', J, 'cancel', 1)
  return 1
end
return 3
"""

# ARGV: P, tenant, retention_ms, retain_max, retain_bytes. Cancels every queued job of the tenant ('': of anyone);
# returns the ids this call cancelled.
_PURGE = _COMMON + r"""
local done = {}
local rm, rn, rb = limits(3)
for _, id in ipairs(redis.call('LRANGE', P .. 'queue', 0, -1)) do
  if tenant_ok(P .. 'job:' .. id, ARGV[2]) and finish(id, 'CANCELLED', '', '', rm, rn, rb) == 1 then
    done[#done + 1] = id
  end
end
if ARGV[2] == '' then redis.call('DEL', P .. 'queue') end
return done
"""

# ARGV: P, id, max_open, tenant. Returns {code, status}: 1 queued again, 0 unknown (or another tenant's), -1 wrong
# state, -2 kept no input, -3 the queue is full.
_RETRY = _COMMON + r"""
local id = ARGV[2]
local J = P .. 'job:' .. id
local status = redis.call('HGET', J, 'status')
if not status or not tenant_ok(J, ARGV[4]) then return {0, ''} end
if status ~= 'FAILED' and status ~= 'TIMED_OUT' then return {-1, status} end
if redis.call('HEXISTS', J, 'input') == 0 then return {-2, status} end
local open = redis.call('LLEN', P .. 'queue') + redis.call('ZCARD', P .. 'running')
if open >= tonumber(ARGV[3]) then return {-3, tostring(open)} end
local size = tonumber(redis.call('HGET', P .. 'sizes', id) or '0')
redis.call('HDEL', P .. 'sizes', id)
redis.call('ZREM', P .. 'finished', id)
redis.call('ZREM', P .. 'forget_at', id)
if size ~= 0 then redis.call('HINCRBY', P .. 'stats', 'bytes', -size) end
redis.call('HINCRBY', P .. 'stats', 'retried', 1)
redis.call('HSET', J, 'status', 'IN_QUEUE', 'attempts', 0, 'stream_bytes', 0, 'stream_sent', 0, 'size', 0)
redis.call('HINCRBY', J, 'retries', 1)
redis.call('HDEL', J, 'output', 'error', 'started', 'ended', 'owner', 'cancel')
redis.call('DEL', P .. 'stream:' .. id)
local expires = tonumber(redis.call('HGET', J, 'expires') or '0')
if expires > 0 then redis.call('PEXPIREAT', J, expires) else redis.call('PERSIST', J) end
redis.call('RPUSH', P .. 'queue', id)
return {1, 'IN_QUEUE'}
"""

# ARGV: P, id. Hands out the waiting stream pieces once.
_TAKE_STREAM = _COMMON + r"""
local J = P .. 'job:' .. ARGV[2]
local S = P .. 'stream:' .. ARGV[2]
if redis.call('EXISTS', J) == 0 then return {} end
local pieces = redis.call('LRANGE', S, 0, -1)
redis.call('DEL', S)
redis.call('HSET', J, 'read_at', now_ms(), 'stream_bytes', 0)
redis.call('HINCRBY', J, 'stream_sent', #pieces)
return pieces
"""

# ARGV: P, id, owner, attempt, piece, buffer. Returns {1} appended; {0, now, read_at} full; {-1} lost.
_APPEND = _COMMON + r"""
local J = P .. 'job:' .. ARGV[2]
local S = P .. 'stream:' .. ARGV[2]
local f = redis.call('HMGET', J, 'owner', 'attempts', 'read_at', 'expires')
if f[1] ~= ARGV[3] or f[2] ~= ARGV[4] then return {-1} end
if redis.call('LLEN', S) >= tonumber(ARGV[6]) then return {0, now_ms(), tonumber(f[3] or '0')} end
redis.call('RPUSH', S, ARGV[5])
if f[4] then redis.call('PEXPIREAT', S, tonumber(f[4])) end
redis.call('HINCRBY', J, 'stream_bytes', #ARGV[5])
return {1}
"""

# ARGV: P, id, owner, attempt, progress. Returns 1 when written: only the replica holding this attempt of a running
# job may say how far it has come.
_PROGRESS = _COMMON + r"""
local J = P .. 'job:' .. ARGV[2]
local f = redis.call('HMGET', J, 'owner', 'attempts', 'status')
if f[1] ~= ARGV[3] or f[2] ~= ARGV[4] or f[3] ~= 'IN_PROGRESS' then return 0 end
redis.call('HSET', J, 'progress', ARGV[5])
return 1
"""

#: Each atomic operation of the store, by name: the Lua source run with ``EVALSHA``.
SCRIPTS: dict[str, str] = {
    "submit": _SUBMIT,
    "take": _TAKE,
    "watch": _WATCH,
    "reap": _REAP,
    "finish": _FINISH_OWNED,
    "cancel": _CANCEL,
    "purge": _PURGE,
    "retry": _RETRY,
    "take_stream": _TAKE_STREAM,
    "append": _APPEND,
    "progress": _PROGRESS,
}
