"""The Lua scripts of app.services.sessions. Each takes every key and key prefix it touches as an argument, so
app.services.sessions stays the one module that names the keys (see its docstring for what they hold)."""

# Ends the session named by ``session`` (its hash key) and id ``id`` of user ``user_id``: its hash, its place in the
# user's index, and, for a session of the layout before tokens named their session (no ``gen``), its token keys and
# its place in that layout's set. The prefixes are the caller's ARGV: ACCESS_P, REFRESH_P, USER_P (that set), INDEX_P.
END_SESSION_LUA = """
local function end_session(session, id, user_id, access_p, refresh_p, user_p, index_p)
  local held = redis.call('HMGET', session, 'gen', 'access', 'refresh')
  if not held[1] then
    if held[2] then redis.call('DEL', access_p .. held[2]) end
    if held[3] then redis.call('DEL', refresh_p .. held[3]) end
  end
  if user_id then
    redis.call('ZREM', index_p .. user_id, id)
    redis.call('SREM', user_p .. user_id, id)
  end
  return redis.call('DEL', session)
end
-- Whether a session whose hash holds these times has outlived idle (seconds since last seen) or max age.
local function outlived(times, now, idle, max_age)
  return now - tonumber(times[2]) > tonumber(idle) or now - tonumber(times[1]) > tonumber(max_age)
end
"""

# KEYS: session, user's index. ARGV: session id, now, session ttl, index ttl, then the hash's fields and values.
# A script, so the login can WAIT on its connection.
OPEN = """
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return redis.call('EXPIRE', KEYS[2], ARGV[4])
"""

# KEYS: session. ARGV: now, session id, generation, access digest, user snapshot prefix, idle timeout, max age,
# access, refresh, user set and index prefixes. One round trip: the token's generation and digest against the
# session's, the access token's lifetime, the session's limits (ended if it outlived one), last seen, and the user's
# cached row (app.services.user_cache). Returns {user id, snapshot, auth_at, mfa_at}, or false.
AUTHENTICATE = END_SESSION_LUA + """
local held = redis.call('HMGET', KEYS[1], 'gen', 'access', 'expires', 'created_at', 'last_seen_at', 'auth_at',
                        'mfa_at', 'user_id')
if held[1] ~= ARGV[3] or held[2] ~= ARGV[4] then return false end
local now = tonumber(ARGV[1])
if now >= tonumber(held[3]) then return false end  -- the access token's expiry (whole seconds)
if outlived({held[4], held[5]}, now, ARGV[6], ARGV[7]) then
  end_session(KEYS[1], ARGV[2], held[8], ARGV[8], ARGV[9], ARGV[10], ARGV[11])
  return false
end
redis.call('HSET', KEYS[1], 'last_seen_at', ARGV[1])
return {held[8], redis.call('GET', ARGV[5] .. held[8]), held[6] or held[4], held[7] or '0'}
"""

# KEYS: session. ARGV: now, session id, the refresh token's generation (its mac checked by the caller) and digest,
# the next access and refresh digests, token ttl, refresh ttl, idle timeout, max age, access, refresh, user set and
# index prefixes. Starts the next generation: {1, user id, access ttl, refresh ttl} (whole seconds; both capped by
# what the session's max age leaves, and the session expires to the millisecond with it); {2} for a token of an
# earlier generation (retired, maybe a moment ago: theft); {3} when the session outlived a limit (now ended); {0}
# when the session is gone or the token is not its current one (e.g. a refresh lost in a failover).
ROTATE = END_SESSION_LUA + """
local held = redis.call('HMGET', KEYS[1], 'user_id', 'gen', 'refresh', 'created_at', 'last_seen_at')
local user_id, generation = held[1], tonumber(held[2])
if not user_id or not generation then return {0} end
if tonumber(ARGV[3]) < generation then return {2} end
if tonumber(ARGV[3]) > generation or held[3] ~= ARGV[4] then return {0} end
local now = tonumber(ARGV[1])
local left_ms = math.floor((tonumber(ARGV[10]) - (now - tonumber(held[4]))) * 1000)
if outlived({held[4], held[5]}, now, ARGV[9], ARGV[10]) or left_ms < 1 then
  end_session(KEYS[1], ARGV[2], user_id, ARGV[11], ARGV[12], ARGV[13], ARGV[14])
  return {3}
end
local access_ms = math.min(tonumber(ARGV[7]) * 1000, left_ms)
local refresh_ms = math.min(tonumber(ARGV[8]) * 1000, left_ms)
redis.call('HSET', KEYS[1], 'gen', tostring(generation + 1), 'access', ARGV[5], 'refresh', ARGV[6],
           'expires', math.ceil(now + access_ms / 1000), 'last_seen_at', ARGV[1])
redis.call('PEXPIRE', KEYS[1], refresh_ms)
redis.call('EXPIRE', ARGV[14] .. user_id, ARGV[8])
return {1, user_id, math.floor(access_ms / 1000), math.floor(refresh_ms / 1000)}
"""

# KEYS: session. ARGV: session id, user id, access, refresh, user set and index prefixes. Ends one session.
END = END_SESSION_LUA + """
return end_session(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
"""

# KEYS: session. ARGV: now, "1" when a second factor was proved. Marks a live session recently authenticated; 1
# if it was live.
MARK_RECENT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'auth_at', ARGV[1])
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'mfa_at', ARGV[1]) end
return 1
"""

# KEYS: a user's index (a sorted set), or that user's set of the layout before tokens named their session. ARGV:
# session prefix, then ids from that key. Removes the ids whose session hash is gone, each checked and removed in
# this one atomic step; how many went. A session opened meanwhile is never among them: open_session writes its hash
# and its index entry in one script, and ids are never reused.
DROP_ENDED = """
local remove = redis.call('TYPE', KEYS[1]).ok == 'zset' and 'ZREM' or 'SREM'
local gone = 0
for i = 2, #ARGV do
  if redis.call('EXISTS', ARGV[1] .. ARGV[i]) == 0 then gone = gone + redis.call(remove, KEYS[1], ARGV[i]) end
end
return gone
"""
