import { beforeEach, describe, expect, it } from 'vitest'
import type { GrantStore, Lease } from '../../src/store/types.js'
import { sleep } from '../../src/time.js'
import { useCleanup } from '../support/fixtures.js'
import { waitFor } from '../support/wait.js'
import { makeGrant, randomGrantKey, recordGrants } from './helpers.js'
import { StoreError } from '../../src/errors.js'

/** The state one test works on: a Redis key prefix, or one embedded store. */
export interface StoreWorld {
  /**
   * Opens a store on this world's state. For Redis every call is a new replica (its own connections)
   * on the same prefix; the embedded store has one replica only, so it returns that store again.
   */
  open: () => Promise<GrantStore>
  /** Closes every store it opened and removes whatever they stored. */
  close: () => Promise<void>
}

/**
 * The behaviour every GrantStore owes the broker, run against each implementation. Lease expiry and grant
 * expiry use real (short) waits so the Redis implementation is tested on Redis' own clock.
 */
export function describeGrantStoreContract (name: string, createWorld: () => Promise<StoreWorld>): void {
  describe(`GrantStore contract: ${name}`, () => {
    let world: StoreWorld
    let replicaA: GrantStore
    let replicaB: GrantStore
    let key: string

    const cleanup = useCleanup()
    beforeEach(async () => {
      world = cleanup.add(await createWorld())
      replicaA = await world.open()
      replicaB = await world.open()
      key = randomGrantKey()
    })

    const lease = async (store: GrantStore, ttlMs = 10_000): Promise<Lease> => {
      const taken = await store.acquireLease(key, ttlMs)
      expect(taken, 'expected to get the lease').not.toBeNull()
      return taken as Lease
    }

    describe('get and putGrant', () => {
      it('returns null for a key that was never written', async () => {
        expect(await replicaA.get(key)).toBeNull()
      })

      it('returns the grant written under the current lease, with that lease\'s fence, to every replica', async () => {
        const grant = makeGrant()
        const held = await lease(replicaA)
        expect(await replicaA.putGrant(held, grant)).toBe(true)
        expect(await replicaA.get(key)).toEqual({ grant, fence: held.fence })
        expect(await replicaB.get(key)).toEqual({ grant, fence: held.fence })
      })

      it('round-trips a grant without scope or refresh token', async () => {
        const grant = makeGrant({ optional: false })
        const held = await lease(replicaA)
        expect(await replicaA.putGrant(held, grant)).toBe(true)
        const stored = await replicaB.get(key)
        expect(stored?.grant).toEqual(grant)
        expect(stored?.grant.refreshToken).toBeUndefined()
      })

      it('keeps grants of different keys apart', async () => {
        const other = randomGrantKey()
        const grant = makeGrant()
        const held = await lease(replicaA)
        expect(await replicaA.putGrant(held, grant)).toBe(true)
        expect(await replicaB.get(other)).toBeNull()
      })

      it('replaces the grant when a later lease holder writes', async () => {
        const first = await lease(replicaA, 10_000)
        expect(await replicaA.putGrant(first, makeGrant())).toBe(true)
        await replicaA.releaseLease(first)
        const second = await lease(replicaB)
        const newer = makeGrant()
        expect(await replicaB.putGrant(second, newer)).toBe(true)
        expect(await replicaA.get(key)).toEqual({ grant: newer, fence: second.fence })
      })

      it('does not store a grant that has already expired', async () => {
        const held = await lease(replicaA)
        const current = makeGrant()
        expect(await replicaA.putGrant(held, current)).toBe(true)
        const expired = makeGrant({ expiresInMs: -1000 })
        expect(await replicaA.putGrant(held, expired)).toBe(false)
        expect((await replicaB.get(key))?.grant).toEqual(current)
      })

      it('forgets a grant once it expires', async () => {
        const held = await lease(replicaA)
        expect(await replicaA.putGrant(held, makeGrant({ expiresInMs: 150 }))).toBe(true)
        expect(await replicaB.get(key)).not.toBeNull()
        await sleep(300)
        expect(await replicaB.get(key)).toBeNull()
      })

      it('deletes a grant under the current lease', async () => {
        const held = await lease(replicaA)
        expect(await replicaA.putGrant(held, makeGrant())).toBe(true)
        expect(await replicaA.deleteGrant(held)).toBe(true)
        expect(await replicaB.get(key)).toBeNull()
      })
    })

    describe('leases', () => {
      it('grants the lease to one owner at a time', async () => {
        await lease(replicaA)
        expect(await replicaB.acquireLease(key, 10_000)).toBeNull()
        expect(await replicaA.acquireLease(key, 10_000)).toBeNull()
        expect(await replicaB.acquireLease(randomGrantKey(), 10_000)).not.toBeNull()
      })

      it('grants exactly one of many simultaneous requests', async () => {
        const attempts = await Promise.all(Array.from({ length: 10 }, async (_, index) =>
          await (index % 2 === 0 ? replicaA : replicaB).acquireLease(key, 10_000)))
        expect(attempts.filter(attempt => attempt !== null)).toHaveLength(1)
      })

      it('lets another owner take the lease once it expires, with a larger fence', async () => {
        const first = await lease(replicaA, 100)
        expect(await replicaB.acquireLease(key, 10_000)).toBeNull()
        await sleep(150)
        const second = await lease(replicaB)
        expect(second.owner).not.toBe(first.owner)
        expect(second.fence).toBeGreaterThan(first.fence)
      })

      it('renews a lease for its owner only, and not once it lapsed and was taken by another', async () => {
        const held = await lease(replicaA, 200)
        await sleep(120)
        expect(await replicaA.renewLease(held, 200)).toBe(true)
        await sleep(120) // past the first expiry: alive only because it was renewed
        expect(await replicaB.acquireLease(key, 10_000)).toBeNull()
        expect(await replicaB.renewLease({ ...held, owner: 'someone-else' }, 10_000)).toBe(false)
        await sleep(150)
        const taken = await lease(replicaB)
        expect(await replicaA.renewLease(held, 10_000)).toBe(false)
        expect(await replicaB.releaseLease(taken)).toBeUndefined()
      })

      it('gives every lease a larger fence than the one before', async () => {
        const fences: number[] = []
        for (let i = 0; i < 3; i++) {
          const held = await lease(i % 2 === 0 ? replicaA : replicaB)
          fences.push(held.fence)
          await (i % 2 === 0 ? replicaA : replicaB).releaseLease(held)
        }
        expect(fences[1]).toBeGreaterThan(fences[0] as number)
        expect(fences[2]).toBeGreaterThan(fences[1] as number)
      })

      it('is released only by its owner', async () => {
        const held = await lease(replicaA)
        await replicaB.releaseLease({ ...held, owner: 'someone-else' })
        expect(await replicaB.acquireLease(key, 10_000)).toBeNull()
        await replicaA.releaseLease(held)
        expect(await replicaB.acquireLease(key, 10_000)).not.toBeNull()
      })

      it('ignores a late release from an owner whose lease expired and was taken by another', async () => {
        const stale = await lease(replicaA, 100)
        await sleep(150)
        await lease(replicaB)
        await replicaA.releaseLease(stale)
        expect(await replicaA.acquireLease(key, 10_000)).toBeNull()
      })
    })

    describe('fencing', () => {
      it('refuses a late write from a lease that expired and was taken by another', async () => {
        const stale = await lease(replicaA, 100)
        await sleep(150)
        const current = await lease(replicaB)
        const fresh = makeGrant()
        expect(await replicaB.putGrant(current, fresh)).toBe(true)
        // A's refresh finished after its lease expired: its write must not replace B's newer grant.
        expect(await replicaA.putGrant(stale, makeGrant())).toBe(false)
        expect(await replicaA.get(key)).toEqual({ grant: fresh, fence: current.fence })
      })

      it('refuses a late write even before the newer holder has written', async () => {
        const stale = await lease(replicaA, 100)
        await sleep(150)
        await lease(replicaB)
        expect(await replicaA.putGrant(stale, makeGrant())).toBe(false)
        expect(await replicaB.get(key)).toBeNull()
      })

      it('refuses a late delete from a lease that expired and was taken by another', async () => {
        const stale = await lease(replicaA, 100)
        await sleep(150)
        const current = await lease(replicaB)
        const fresh = makeGrant()
        expect(await replicaB.putGrant(current, fresh)).toBe(true)
        expect(await replicaA.deleteGrant(stale)).toBe(false)
        expect((await replicaB.get(key))?.grant).toEqual(fresh)
      })

      it('accepts a write from an expired lease that nobody has taken since (its fence is still the newest)', async () => {
        const held = await lease(replicaA, 100)
        await sleep(150)
        const grant = makeGrant()
        expect(await replicaA.putGrant(held, grant)).toBe(true)
        expect((await replicaB.get(key))?.grant).toEqual(grant)
      })

      it('refuses a write with a fence that was never granted', async () => {
        const held = await lease(replicaA)
        expect(await replicaA.putGrant({ ...held, fence: held.fence + 1 }, makeGrant())).toBe(false)
        expect(await replicaA.get(key)).toBeNull()
      })
    })

    describe('onGrant', () => {
      it('tells every replica, the writer included, about a write', async () => {
        const seenByA = recordGrants(replicaA)
        const seenByB = recordGrants(replicaB)
        const held = await lease(replicaA)
        expect(await replicaA.putGrant(held, makeGrant())).toBe(true)
        await waitFor('both replicas heard of the write', () => seenByA.keys.includes(key) && seenByB.keys.includes(key), { timeout: 3000 })
        seenByA.stop()
        seenByB.stop()
      })

      it('tells every replica about a delete', async () => {
        const seen = recordGrants(replicaB)
        const held = await lease(replicaA)
        expect(await replicaA.putGrant(held, makeGrant())).toBe(true)
        await waitFor('the write was announced', () => seen.keys.length === 1, { timeout: 3000 })
        expect(await replicaA.deleteGrant(held)).toBe(true)
        await waitFor('the delete was announced', () => seen.keys.length === 2, { timeout: 3000 })
        expect(seen.keys).toEqual([key, key])
        // A write carries its fence (a replica holding that grant need not read it back); a delete none.
        expect(seen.fences).toEqual([held.fence, undefined])
        seen.stop()
      })

      it('announces nothing for a refused write, and stops calling a listener once unsubscribed', async () => {
        const stale = await lease(replicaA, 100)
        await sleep(150)
        await lease(replicaB)
        const unsubscribed = recordGrants(replicaB)
        unsubscribed.stop()
        const seen = recordGrants(replicaB)
        expect(await replicaA.putGrant(stale, makeGrant())).toBe(false)
        // Announcements from one writer arrive in order: once this one is heard, the refused one would have been.
        const marker = randomGrantKey()
        const markerLease = await replicaA.acquireLease(marker, 10_000)
        expect(markerLease).not.toBeNull()
        expect(await replicaA.putGrant(markerLease as Lease, makeGrant())).toBe(true)
        await waitFor('the marker write was announced', () => seen.keys.includes(marker), { timeout: 3000 })
        expect(seen.keys).toEqual([marker])
        expect(unsubscribed.keys).toEqual([])
        seen.stop()
      })

      it('keeps calling other listeners when one throws', async () => {
        const stopThrowing = replicaB.onGrant(() => { throw new Error('listener bug') })
        const seen = recordGrants(replicaB)
        const held = await lease(replicaA)
        expect(await replicaA.putGrant(held, makeGrant())).toBe(true)
        await waitFor('the healthy listener heard of the write', () => seen.keys.includes(key), { timeout: 3000 })
        stopThrowing()
        seen.stop()
      })
    })

    describe('health and close', () => {
      it('reports up while open', async () => {
        expect(await replicaA.health()).toEqual({ state: 'up' })
      })

      it('rejects calls with a StoreError once closed, and reports down', async () => {
        await replicaA.close()
        await expect(replicaA.get(key)).rejects.toBeInstanceOf(StoreError)
        await expect(replicaA.acquireLease(key, 1000)).rejects.toMatchObject({ name: 'StoreError', kind: 'closed' })
        expect((await replicaA.health()).state).toBe('down')
        // Closing twice is harmless.
        await replicaA.close()
      })
    })

    describe('arguments', () => {
      it('rejects a key that would break the hash tag, and a lease time that is not positive', async () => {
        await expect(replicaA.get('a}b')).rejects.toMatchObject({ name: 'StoreError', kind: 'invalid' })
        await expect(replicaA.acquireLease(key, 0)).rejects.toMatchObject({ name: 'StoreError', kind: 'invalid' })
        await expect(replicaA.acquireLease(key, Number.NaN)).rejects.toMatchObject({ name: 'StoreError', kind: 'invalid' })
      })
    })
  })
}
