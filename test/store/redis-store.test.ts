import { beforeEach, describe, expect, it } from 'vitest'
import { keyId } from '../../src/store/encryption.js'
import type { Lease } from '../../src/store/types.js'
import { useCleanup } from '../support/fixtures.js'
import { describeGrantStoreContract } from './grant-store.contract.js'
import { captureLogs } from '../support/logs.js'
import { makeGrant, randomGrantKey, randomKey } from './helpers.js'
import { createRedisWorld, type RedisWorld } from './redis-world.js'

describeGrantStoreContract('redis', async () => await createRedisWorld())

describe('redis grant store', () => {
  let world: RedisWorld
  let key: string

  const cleanup = useCleanup()
  beforeEach(async () => {
    world = cleanup.add(await createRedisWorld())
    key = randomGrantKey()
  })

  const grantKey = (name: string): string => `${world.prefix}:{${name}}:grant`

  describe('keys', () => {
    it('keeps the grant, lease and fence of one credential under one hash tag', async () => {
      const store = await world.open()
      const lease = await store.acquireLease(key, 10_000) as Lease
      expect(await store.putGrant(lease, makeGrant())).toBe(true)
      const [, keys] = await world.raw().scan('0', 'MATCH', `${world.prefix}:*`, 'COUNT', 1000)
      expect(keys.sort()).toEqual([`${world.prefix}:{${key}}:fence`, `${world.prefix}:{${key}}:grant`, `${world.prefix}:{${key}}:lease`])
    })

    it('sets the Redis TTL of a grant to its time to expiry, and keeps the fence without one', async () => {
      const store = await world.open()
      const lease = await store.acquireLease(key, 10_000) as Lease
      const expiresInMs = 30 * 60_000
      expect(await store.putGrant(lease, makeGrant({ expiresInMs }))).toBe(true)
      const raw = world.raw()
      const grantTtl = await raw.pttl(grantKey(key))
      expect(grantTtl).toBeGreaterThan(expiresInMs - 2000)
      expect(grantTtl).toBeLessThanOrEqual(expiresInMs)
      const leaseTtl = await raw.pttl(`${world.prefix}:{${key}}:lease`)
      expect(leaseTtl).toBeGreaterThan(0)
      expect(leaseTtl).toBeLessThanOrEqual(10_000)
      // The fence must outlive grants and leases: were it to expire, fences would restart at 1 and a
      // stale lease holder could match again.
      expect(await raw.pttl(`${world.prefix}:{${key}}:fence`)).toBe(-1)
    })

    it('never hands out a fence again when a failover lost the latest increments of the counter', async () => {
      const store = await world.open()
      let first = await store.acquireLease(key, 10_000) as Lease
      for (let i = 0; i < 3; i++) {
        await store.releaseLease(first)
        first = await store.acquireLease(key, 10_000) as Lease
      }
      await store.releaseLease(first)
      // A replica promoted before it saw the last increments holds an older counter: here, the first one.
      await world.raw().set(`${world.prefix}:{${key}}:fence`, '1')
      await new Promise(resolve => setTimeout(resolve, 5))
      const second = await store.acquireLease(key, 10_000) as Lease
      expect(second.fence).toBeGreaterThan(first.fence)
      // The holder of the first lease is fenced out, as it must be.
      expect(await store.putGrant(first, makeGrant())).toBe(false)
      expect(await store.putGrant(second, makeGrant())).toBe(true)
    })

    it('takes over a lease left without an expiry, or with far more left than any holder asks for', async () => {
      const store = await world.open()
      await world.raw().set(`${world.prefix}:{${key}}:lease`, 'a-holder-that-never-expires')
      expect(await store.acquireLease(key, 3000)).not.toBeNull()
      const other = `${key}-b`
      await world.raw().set(`${world.prefix}:{${other}}:lease`, 'a-holder-for-a-day', 'PX', 86_400_000)
      expect(await store.acquireLease(other, 3000)).not.toBeNull()
      // A lease that a holder took normally is not taken over.
      expect(await store.acquireLease(other, 3000)).toBeNull()
    })

    it('announces writes on the <prefix>:grants channel, with the fence of the write', async () => {
      const store = await world.open()
      const subscriber = world.raw()
      const messages: Array<[string, string]> = []
      subscriber.on('message', (channel: string, message: string) => { messages.push([channel, message]) })
      await subscriber.subscribe(`${world.prefix}:grants`)
      const lease = await store.acquireLease(key, 10_000) as Lease
      expect(await store.putGrant(lease, makeGrant())).toBe(true)
      await expect.poll(() => messages, { timeout: 3000 }).toEqual([[`${world.prefix}:grants`, `${key} ${lease.fence}`]])
    })
  })

  describe('encryption at rest', () => {
    it('stores no plaintext token in Redis, only an AES-GCM envelope with the key id', async () => {
      const store = await world.open()
      const lease = await store.acquireLease(key, 10_000) as Lease
      const grant = makeGrant()
      expect(await store.putGrant(lease, grant)).toBe(true)
      const raw = await world.raw().get(grantKey(key))
      expect(raw).not.toBeNull()
      expect(raw).not.toContain(grant.accessToken)
      expect(raw).not.toContain(grant.refreshToken)
      expect(raw).not.toContain(grant.scope)
      const stored = JSON.parse(raw as string) as { v: number, fence: number, sealed: Record<string, unknown> }
      expect(stored.fence).toBe(lease.fence)
      expect(Object.keys(stored.sealed).sort()).toEqual(['ct', 'iv', 'kid', 'tag', 'v'])
      expect(stored.sealed.kid).toBe(keyId(Buffer.from(world.keySpec, 'base64')))
      expect(Buffer.from(stored.sealed.iv as string, 'base64')).toHaveLength(12)
      expect(Buffer.from(stored.sealed.tag as string, 'base64')).toHaveLength(16)
    })

    it('reads grants sealed with the old key after a rotation to "B,A", and seals new ones with B', async () => {
      const keyA = randomKey()
      const keyB = randomKey()
      const beforeRotation = await world.openWith({ keySpec: keyA })
      const afterRotation = await world.openWith({ keySpec: `${keyB},${keyA}` })
      const first = await beforeRotation.acquireLease(key, 100) as Lease
      const old = makeGrant()
      expect(await beforeRotation.putGrant(first, old)).toBe(true)
      expect(await afterRotation.get(key)).toEqual({ grant: old, fence: first.fence })

      const second = await afterRotation.acquireLease(randomGrantKey(), 10_000) as Lease
      expect(await afterRotation.putGrant(second, makeGrant())).toBe(true)
      const raw = JSON.parse(await world.raw().get(grantKey(second.key)) as string) as { sealed: { kid: string } }
      expect(raw.sealed.kid).toBe(keyId(Buffer.from(keyB, 'base64')))
    })

    it('treats a grant sealed with a key it no longer holds as absent, with a warning and no token in the log', async () => {
      const keyA = randomKey()
      const keyB = randomKey()
      const writer = await world.openWith({ keySpec: keyA })
      const logs = captureLogs()
      const reader = await world.openWith({ keySpec: keyB, log: logs.log })
      const lease = await writer.acquireLease(key, 10_000) as Lease
      const grant = makeGrant()
      expect(await writer.putGrant(lease, grant)).toBe(true)
      expect(await reader.get(key)).toBeNull()
      expect(logs.messages()).toContain('stored grant is sealed with a key this replica does not hold (rotated away?); treating it as absent')
      expect(logs.text()).not.toContain(grant.accessToken)
      expect(logs.text()).not.toContain(grant.refreshToken)
      // The reader heals it the way the broker would: a new grant under its own key replaces the old one.
      const next = await reader.acquireLease(key, 10_000)
      expect(next).toBeNull()
      await writer.releaseLease(lease)
      const healed = await reader.acquireLease(key, 10_000) as Lease
      const fresh = makeGrant()
      expect(await reader.putGrant(healed, fresh)).toBe(true)
      expect((await reader.get(key))?.grant).toEqual(fresh)
    })

    it('does not open a sealed grant copied under another key', async () => {
      const logs = captureLogs()
      const store = await world.openWith({ log: logs.log })
      const other = randomGrantKey()
      const original = makeGrant()
      const leaseA = await store.acquireLease(key, 10_000) as Lease
      const leaseB = await store.acquireLease(other, 10_000) as Lease
      expect(await store.putGrant(leaseA, original)).toBe(true)
      expect(await store.putGrant(leaseB, makeGrant())).toBe(true)
      const raw = world.raw()
      // Copy the whole stored value, fence included, so only the key binding can make it fail.
      const value = JSON.parse(await raw.get(grantKey(key)) as string) as { fence: number }
      value.fence = leaseB.fence
      await raw.set(grantKey(other), JSON.stringify(value), 'KEEPTTL')
      expect(await store.get(other)).toBeNull()
      expect((await store.get(key))?.grant).toEqual(original)
      expect(logs.messages()).toContain('stored grant does not decrypt (wrong key, moved or tampered); treating it as absent')
    })

    it('treats a stored value that is not a sealed grant as absent', async () => {
      const logs = captureLogs()
      const store = await world.openWith({ log: logs.log })
      await world.raw().set(grantKey(key), 'not json', 'PX', 60_000)
      expect(await store.get(key)).toBeNull()
      await world.raw().set(grantKey(key), JSON.stringify({ v: 1, fence: 1, sealed: { v: 1, kid: 'x' } }), 'PX', 60_000)
      expect(await store.get(key)).toBeNull()
      expect(logs.messages()).toEqual([
        'stored grant is not in a known format; treating it as absent',
        'stored grant is not a readable envelope; treating it as absent'
      ])
    })
  })
})
