"""The Lua scripts that serve tokens issued before tokens named their session (app.services.legacy_sessions).

They are the scripts of that layout, unchanged but for ending a session through the shared ``end_session``.
Delete this module, app.services.legacy_sessions and their tests once every such session has ended: at most
``auth.session_max_age`` (default 30 days) after the upgrade.
"""

from app.services.session_scripts import END_SESSION_LUA

# KEYS: access. ARGV: now, session prefix, user snapshot prefix, idle timeout, max age, access prefix, refresh
# prefix, user set prefix, session index prefix. One round trip: the token, its session (ended if it outlived a
# limit), last seen, and the user's cached row (app.services.user_cache). Returns {"<session id>:<user id>",
# snapshot, auth_at, mfa_at}.
AUTHENTICATE = END_SESSION_LUA + """
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
  end_session(session, id, user_id, ARGV[6], ARGV[7], ARGV[8], ARGV[9])
  redis.call('DEL', KEYS[1])
  return false
end
redis.call('HSET', session, 'last_seen_at', ARGV[1])
return {value, redis.call('GET', ARGV[3] .. user_id), times[3] or times[1], times[4] or '0'}
"""

# KEYS: old refresh, new access, new refresh. ARGV: now, session prefix, new access digest, new refresh digest,
# token ttl, refresh ttl, access prefix, user set prefix, idle timeout, max age, refresh prefix, session index
# prefix.
# Returns {1, session id, user id, access ttl, refresh ttl} (whole seconds; both capped by what the session's max
# age leaves, and the keys expire to the millisecond with it), {2, session id} for a retired token (theft), {3} when
# the session outlived a limit (now ended), or {0} when unknown.
ROTATE = END_SESSION_LUA + """
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
  end_session(session, value, user_id, ARGV[7], ARGV[11], ARGV[8], ARGV[12])
  return {3}
end
local left_ms = math.floor((tonumber(ARGV[10]) - (now - tonumber(times[1]))) * 1000)
if left_ms < 1 then
  end_session(session, value, user_id, ARGV[7], ARGV[11], ARGV[8], ARGV[12])
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

