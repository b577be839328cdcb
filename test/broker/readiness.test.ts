import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { createSharedStore } from '../../src/broker/shared-store.js'
import { anyGrantStored } from '../../src/broker/status.js'
import { createMemoryGrantStore } from '../../src/store/memory-store.js'
import { decideReadiness, needsStoreLook, type ReadinessFacts, type ReadinessState } from '../../src/broker/readiness.js'

const healthy: ReadinessFacts = {
  started: true,
  closing: false,
  credentials: 3,
  store: { state: 'up' },
  secrets: { state: 'ok' },
  secretHeld: true,
  grantHeld: true
}
const vaultDown = { state: 'degraded', detail: 'Vault unreachable (ECONNREFUSED)' } as const
const redisDown = { state: 'down', detail: 'connection refused' } as const

const cases: Array<{ name: string, facts: Partial<ReadinessFacts>, state: ReadinessState, reason?: RegExp }> = [
  { name: 'everything up, secrets and grants held', facts: {}, state: 'ready' },
  { name: 'everything up, nothing read yet (first reads happen on demand)', facts: { secretHeld: false, grantHeld: false }, state: 'ready' },
  { name: 'embedded file secrets, signing credentials only (no grant ever)', facts: { grantHeld: false }, state: 'ready' },
  { name: 'not started yet', facts: { started: false }, state: 'not_ready', reason: /starting/ },
  { name: 'shutting down', facts: { closing: true }, state: 'not_ready', reason: /shutting down/ },
  { name: 'Redis down, secrets held', facts: { store: redisDown, grantHeld: false }, state: 'degraded', reason: /store is down \(connection refused\)/ },
  { name: 'Vault down, grants held', facts: { secrets: vaultDown, secretHeld: false }, state: 'degraded', reason: /secret source is degraded \(Vault unreachable/ },
  { name: 'Vault down, secrets held, no grant', facts: { secrets: vaultDown, grantHeld: false }, state: 'degraded' },
  { name: 'Vault down, nothing held, a grant in the store', facts: { secrets: vaultDown, secretHeld: false, grantHeld: false, grantStored: true }, state: 'degraded' },
  {
    name: 'Vault down from the start, nothing held or stored',
    facts: { secrets: vaultDown, secretHeld: false, grantHeld: false, grantStored: false },
    state: 'not_ready',
    reason: /cannot serve any credential: the secret source is unavailable \(Vault unreachable \(ECONNREFUSED\)\), no client secret has been read, and no grant is held or stored/
  },
  {
    name: 'Vault and Redis down, nothing held',
    facts: { secrets: vaultDown, store: redisDown, secretHeld: false, grantHeld: false },
    state: 'not_ready',
    reason: /no grant is held \(the store is down \(connection refused\)\)/
  },
  { name: 'Vault not contacted, nothing held', facts: { secrets: { state: 'down', detail: 'Vault not contacted yet' }, secretHeld: false, grantHeld: false }, state: 'not_ready', reason: /Vault not contacted yet/ },
  { name: 'no credentials configured, Vault down', facts: { credentials: 0, secrets: vaultDown, secretHeld: false, grantHeld: false }, state: 'degraded' },
  { name: 'shutting down wins over degraded', facts: { closing: true, store: redisDown }, state: 'not_ready', reason: /shutting down/ }
]

describe('decideReadiness', () => {
  it.each(cases)('$name → $state', ({ facts, state, reason }) => {
    const readiness = decideReadiness({ ...healthy, ...facts })
    expect(readiness.state).toBe(state)
    if (state === 'ready') expect(readiness.reason).toBeUndefined()
    else expect(readiness.reason).toMatch(reason ?? /./)
  })

  it('looks in the store only when nothing held can serve and no secret can be read', () => {
    expect(needsStoreLook(healthy)).toBe(false)
    expect(needsStoreLook({ ...healthy, secrets: vaultDown, grantHeld: false })).toBe(false)
    expect(needsStoreLook({ ...healthy, secretHeld: false, grantHeld: false })).toBe(false)
    expect(needsStoreLook({ ...healthy, secrets: vaultDown, secretHeld: false, grantHeld: false })).toBe(true)
  })
})

describe('anyGrantStored', () => {
  it('finds an unexpired stored grant among many keys (past the first batch), and nothing once it expired', async () => {
    let now = 1_000_000
    const store = createMemoryGrantStore({ now: () => now })
    const shared = createSharedStore(store, pino({ level: 'silent' }))
    const keys = Array.from({ length: 450 }, (_, index) => `grant:${index}`)
    expect(await anyGrantStored(keys, shared, () => now)).toBe(false)
    const lease = await store.acquireLease('grant:321', 10_000)
    if (lease === null) throw new Error('no lease')
    await store.putGrant(lease, { accessToken: 'stored-token', tokenType: 'Bearer', obtainedAt: now, expiresAt: now + 60_000 })
    expect(await anyGrantStored(keys, shared, () => now)).toBe(true)
    expect(await anyGrantStored(keys.filter(key => key !== 'grant:321'), shared, () => now)).toBe(false)
    now += 60_000
    expect(await anyGrantStored(keys, shared, () => now)).toBe(false)
    await store.close()
  })
})
