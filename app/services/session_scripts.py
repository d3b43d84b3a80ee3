"""The Lua scripts of app.services.sessions. Each takes every key and key prefix it touches as an argument, so
app.services.sessions stays the one module that names the keys (see its docstring for what they hold)."""

# Ends the session named by ``session`` (its hash key) and id ``id`` of user ``user_id``: its tokens, its hash, its
# place in the user's set. ARGV positions of the prefixes are the caller's: ACCESS_P, REFRESH_P, USER_P.
_END_SESSION_LUA = """
local function end_session(session, id, user_id, access_p, refresh_p, user_p)
  local tokens = redis.call('HMGET', session, 'access', 'refresh')
  if tokens[1] then redis.call('DEL', access_p .. tokens[1]) end
  if tokens[2] then redis.call('DEL', refresh_p .. tokens[2]) end
  if user_id then redis.call('SREM', user_p .. user_id, id) end
  return redis.call('DEL', session)
end
-- Whether a session whose hash holds these times has outlived idle (seconds since last seen) or max age.
local function outlived(times, now, idle, max_age)
  return now - tonumber(times[2]) > tonumber(idle) or now - tonumber(times[1]) > tonumber(max_age)
end
"""

# KEYS: access. ARGV: now, session prefix, user snapshot prefix, idle timeout, max age, access prefix, refresh
# prefix, user set prefix. One round trip: the token, its session (ended if it outlived a limit), last seen, and
# the user's cached row (app.services.user_cache). Returns {"<session id>:<user id>", snapshot, auth_at, mfa_at}.
AUTHENTICATE = _END_SESSION_LUA + """
local value = redis.call('GET', KEYS[1])
if not value then return false end
local id, user_id = string.match(value, '^([^:]+):(%d+)$')
local session = ARGV[2] .. id
local times = redis.call('HMGET', session, 'created_at', 'last_seen_at', 'auth_at', 'mfa_at')
if not times[1] then
  redis.call('DEL', KEYS[1])
  return false
end
if outlived(times, tonumber(ARGV[1]), ARGV[4], ARGV[5]) then
  end_session(session, id, user_id, ARGV[6], ARGV[7], ARGV[8])
  redis.call('DEL', KEYS[1])
  return false
end
redis.call('HSET', session, 'last_seen_at', ARGV[1])
return {value, redis.call('GET', ARGV[3] .. user_id), times[3] or times[1], times[4] or '0'}
"""

# KEYS: old refresh, new access, new refresh. ARGV: now, session prefix, new access digest, new refresh digest,
# token ttl, refresh ttl, access prefix, user set prefix, idle timeout, max age, refresh prefix.
# Returns {1, session id, user id, access ttl, refresh ttl} (whole seconds; both capped by what the session's max
# age leaves, and the keys expire to the millisecond with it), {2, session id} for a retired token (theft), {3} when
# the session outlived a limit (now ended), or {0} when unknown.
ROTATE = _END_SESSION_LUA + """
local value = redis.call('GET', KEYS[1])
if not value then return {0} end
local retired = string.match(value, '^retired:(.+)$')
if retired then return {2, retired} end
local session = ARGV[2] .. value
local user_id = redis.call('HGET', session, 'user_id')
if not user_id then return {0} end
local now = tonumber(ARGV[1])
local times = redis.call('HMGET', session, 'created_at', 'last_seen_at')
if outlived(times, now, ARGV[9], ARGV[10]) then
  end_session(session, value, user_id, ARGV[7], ARGV[11], ARGV[8])
  return {3}
end
local left_ms = math.floor((tonumber(ARGV[10]) - (now - tonumber(times[1]))) * 1000)
if left_ms < 1 then
  end_session(session, value, user_id, ARGV[7], ARGV[11], ARGV[8])
  return {3}
end
local access_ms = math.min(tonumber(ARGV[5]) * 1000, left_ms)
local refresh_ms = math.min(tonumber(ARGV[6]) * 1000, left_ms)
local old_access = redis.call('HGET', session, 'access')
if old_access then redis.call('DEL', ARGV[7] .. old_access) end
redis.call('SET', KEYS[1], 'retired:' .. value, 'KEEPTTL')
redis.call('SET', KEYS[2], value .. ':' .. user_id, 'PX', access_ms)
redis.call('SET', KEYS[3], value, 'PX', refresh_ms)
redis.call('HSET', session, 'access', ARGV[3], 'refresh', ARGV[4], 'last_seen_at', ARGV[1])
redis.call('PEXPIRE', session, refresh_ms)
redis.call('EXPIRE', ARGV[8] .. user_id, ARGV[6])
return {1, value, user_id, math.floor(access_ms / 1000), math.floor(refresh_ms / 1000)}
"""

# KEYS: session. ARGV: session id, user id, access prefix, refresh prefix, user set prefix. Ends one session.
END = _END_SESSION_LUA + """
return end_session(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
"""

# KEYS: session, access, refresh, user set. ARGV: session id, user id, now, ip, user agent, access and refresh digests,
# "1" with a second factor, access, refresh and user set ttls. A script, so the login can WAIT on its connection.
OPEN = """
redis.call('HSET', KEYS[1], 'user_id', ARGV[2], 'created_at', ARGV[3], 'last_seen_at', ARGV[3], 'auth_at', ARGV[3],
           'ip', ARGV[4], 'user_agent', ARGV[5], 'access', ARGV[6], 'refresh', ARGV[7])
if ARGV[8] == '1' then redis.call('HSET', KEYS[1], 'mfa_at', ARGV[3]) end
redis.call('EXPIRE', KEYS[1], ARGV[10])
redis.call('SET', KEYS[2], ARGV[1] .. ':' .. ARGV[2], 'EX', ARGV[9])
redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[10])
redis.call('SADD', KEYS[4], ARGV[1])
return redis.call('EXPIRE', KEYS[4], ARGV[11])
"""

# KEYS: session. ARGV: now, "1" when a second factor was proved. Marks a live session recently authenticated; 1
# if it was live.
MARK_RECENT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'auth_at', ARGV[1])
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'mfa_at', ARGV[1]) end
return 1
"""

# KEYS: a user's set of session ids. ARGV: session prefix, then ids from that set. Removes the ids whose session
# hash is gone, each checked and removed in this one atomic step; how many went. A session opened meanwhile is never
# among them: open_session writes its hash and its set entry in one transaction, and ids are never reused.
DROP_ENDED = """
local gone = 0
for i = 2, #ARGV do
  if redis.call('EXISTS', ARGV[1] .. ARGV[i]) == 0 then gone = gone + redis.call('SREM', KEYS[1], ARGV[i]) end
end
return gone
"""
