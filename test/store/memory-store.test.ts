import { describe, expect, it } from 'vitest'
import { createGrantCipher } from '../../src/store/encryption.js'
import { createMemoryGrantStore } from '../../src/store/memory-store.js'
import type { GrantStore, Lease } from '../../src/store/types.js'
import { describeGrantStoreContract } from './grant-store.contract.js'
import { captureLogs } from '../support/logs.js'
import { waitFor } from '../support/wait.js'
import { makeGrant, randomKey, recordGrants } from './helpers.js'

describeGrantStoreContract('memory', async () => {
  // One embedded store is the only replica there is: every open() hands out the same one.
  const store = createMemoryGrantStore()
  return {
    open: async () => store,
    close: async () => { await store.close() }
  }
})

describe('memory grant store', () => {
  const withClock = (): { store: GrantStore, clock: { now: number } } => {
    const clock = { now: Date.parse('2030-01-01T00:00:00Z') }
    return { store: createMemoryGrantStore({ now: () => clock.now }), clock }
  }

  it('expires leases by the injected clock', async () => {
    const { store, clock } = withClock()
    const first = await store.acquireLease('kivra-production', 30_000)
    expect(first).not.toBeNull()
    clock.now += 29_999
    expect(await store.acquireLease('kivra-production', 30_000)).toBeNull()
    clock.now += 1
    const second = await store.acquireLease('kivra-production', 30_000)
    expect(second?.fence).toBe((first as Lease).fence + 1)
    await store.close()
  })

  it('expires an 8 hour grant by the injected clock', async () => {
    const { store, clock } = withClock()
    const lease = await store.acquireLease('kivra-production', 30_000) as Lease
    const grant = makeGrant({ now: clock.now, expiresInMs: 8 * 3600_000 })
    expect(await store.putGrant(lease, grant)).toBe(true)
    clock.now += 8 * 3600_000 - 1
    expect((await store.get('kivra-production'))?.grant).toEqual(grant)
    clock.now += 1
    expect(await store.get('kivra-production')).toBeNull()
    await store.close()
  })

  it('announces a write after putGrant has returned, never inside it', async () => {
    const store = createMemoryGrantStore()
    const seen = recordGrants(store)
    const lease = await store.acquireLease('kigo-sandbox', 1000) as Lease
    expect(await store.putGrant(lease, makeGrant())).toBe(true)
    expect(seen.keys).toEqual([])
    await waitFor('the write was announced', () => seen.keys.length === 1, { timeout: 1000 })
    await store.close()
  })

  it('hands out copies: changing a returned grant does not change the stored one', async () => {
    const store = createMemoryGrantStore()
    const lease = await store.acquireLease('kigo-sandbox', 1000) as Lease
    const grant = makeGrant()
    await store.putGrant(lease, grant)
    const first = await store.get('kigo-sandbox')
    if (first === null) throw new Error('expected a grant')
    first.grant.accessToken = 'changed'
    grant.accessToken = 'changed too'
    expect((await store.get('kigo-sandbox'))?.grant.accessToken).not.toMatch(/changed/)
    await store.close()
  })

  it('keeps grants sealed with a cipher when given one, and reads them back', async () => {
    const logs = captureLogs()
    const cipher = createGrantCipher(randomKey(), { log: logs.log })
    const calls = { seal: 0, open: 0 }
    const store = createMemoryGrantStore({
      cipher: {
        ...cipher,
        seal: (grant, aad) => { calls.seal++; return cipher.seal(grant, aad) },
        open: (envelope, aad) => { calls.open++; return cipher.open(envelope, aad) }
      }
    })
    const lease = await store.acquireLease('klavi-production', 1000) as Lease
    const grant = makeGrant()
    expect(await store.putGrant(lease, grant)).toBe(true)
    expect(await store.get('klavi-production')).toEqual({ grant, fence: lease.fence })
    expect(calls).toEqual({ seal: 1, open: 1 })
    await store.close()
  })
})
