/**
 * The Lua scripts of the grant store. Each runs atomically in Redis: no other client's command can run
 * between its steps, which is what makes "take the lease and bump the fence" and "check the fence and
 * write" single operations. Every key a script touches shares one hash tag, so each stays in one slot.
 */
/**
 * KEYS: lease, fence. ARGV: owner, ttl ms, longest sane ttl ms. Returns the new fence, or nil when someone
 * holds the lease.
 *
 * A lease without an expiry (left by a bug, or set by hand) or with far more left than any holder asks
 * for would block its grant key for ever: it is treated as broken and taken over.
 *
 * The new fence is one more than the last, and never less than the server's clock in milliseconds.
 * Replication is asynchronous: when a master fails, the replica that takes over may not have seen the
 * last few fence increments, and plain INCR would then hand out a fence that a refresher still holds,
 * letting its late write through. The failover itself takes seconds, so the new master's clock is past
 * every fence the old one issued (unless the two clocks differ by more than the failover takes).
 * TIME before a write is allowed since Redis 5 (scripts replicate their effects, not the script).
 */
const acquireLeaseScript = `
local left = redis.call('PTTL', KEYS[1])
if left == -1 or left > tonumber(ARGV[3]) then redis.call('DEL', KEYS[1]) end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local time = redis.call('TIME')
  local clock = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local fence = math.max((tonumber(redis.call('GET', KEYS[2])) or 0) + 1, clock)
  redis.call('SET', KEYS[2], string.format('%.0f', fence))
  return fence
end
return false
`

/**
 * KEYS: lease. ARGV: owner, channel, key, announce ("1"/"0"). Deletes the lease only if we still own it
 * (it may have expired and been retaken); when asked, announces it like a write, so replicas waiting on
 * this lease look again at once instead of sleeping until it would have lapsed (a holder whose refresh
 * failed writes no grant, and so sends no other notice).
 */
const releaseLeaseScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if ARGV[4] == '1' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
  return 1
end
return 0
`

/** KEYS: lease. ARGV: owner, ttl ms. Extends the lease only if we still own it: 1, else 0 (it lapsed and may be another's). */
const renewLeaseScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`

/**
 * KEYS: grant, fence. ARGV: fence, value, ttl ms, channel, notice ("<key> <fence>"). Writes only if no lease was granted after
 * the writer's: every acquisition increments the fence, so a refresher whose lease expired mid-mint finds
 * a larger fence and its late write is dropped instead of overwriting a newer grant.
 */
const putGrantScript = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
`

/** KEYS: grant, fence. ARGV: fence, channel, key. Fenced like putGrantScript. */
const deleteGrantScript = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
`

/**
 * Every script the store runs, with its number of keys. All keys of one call are the keys of one grant
 * key (keysOf), which share a hash tag and so one Cluster slot, as Redis requires of a script. The grant
 * notice is a PUBLISH of a channel, not a key: on a Cluster it reaches subscribers on every node.
 */
export const grantScripts = {
  cbAcquireLease: { numberOfKeys: 2, lua: acquireLeaseScript },
  cbReleaseLease: { numberOfKeys: 1, lua: releaseLeaseScript },
  cbRenewLease: { numberOfKeys: 1, lua: renewLeaseScript },
  cbPutGrant: { numberOfKeys: 2, lua: putGrantScript },
  cbDeleteGrant: { numberOfKeys: 2, lua: deleteGrantScript }
} as const

export interface GrantScripts {
  cbAcquireLease: (leaseKey: string, fenceKey: string, owner: string, ttlMs: number, maxSaneTtlMs: number) => Promise<number | null>
  cbRenewLease: (leaseKey: string, owner: string, ttlMs: number) => Promise<number>
  cbReleaseLease: (leaseKey: string, owner: string, channel: string, key: string, announce: string) => Promise<number>
  cbPutGrant: (grantKey: string, fenceKey: string, fence: string, value: string, ttlMs: number, channel: string, key: string) => Promise<number>
  cbDeleteGrant: (grantKey: string, fenceKey: string, fence: string, channel: string, key: string) => Promise<number>
}
