import { describe, expect, it, vi } from 'vitest'
import { buildTestApp, exampleApiKey, sha256Hex } from '../support/app.js'
import { useCleanup } from '../support/fixtures.js'
import { startKivraStandIn } from '../support/providers/index.js'

/** The value of one sample line of the Prometheus text format, or undefined. */
function sample (text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels).map(([key, value]) => `${key}="${value}"`)
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue
    const labelText = line.slice(name.length).split(' ')[0] ?? ''
    if (wanted.every(pair => labelText.includes(pair))) return Number(line.split(' ').at(-1))
  }
  return undefined
}

describe('GET /metrics', () => {
  const cleanup = useCleanup()

  it('counts what the broker did: requests by result, refreshes by reason and result, expiry, breaker, health', async () => {
    const kivra = cleanup.add(await startKivraStandIn())
    const testApp = cleanup.add(await buildTestApp({
      credentialsFile: {
        callers: [{ id: 'service', api_key_sha256: sha256Hex(exampleApiKey) }],
        credentials: [{ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'secret/kivra', base_url: kivra.url, allowed_callers: ['service'], timeout_ms: 500 }]
      },
      secrets: { 'secret/kivra': { ...kivra.secret } as Record<string, string> },
      overrides: { brokerOptions: { breakerFailureThreshold: 2 } }
    }))
    const { app } = testApp
    const get = async (): Promise<number> => (await app.inject({ url: '/v1/credentials/kivra/token', headers: { authorization: `Bearer ${exampleApiKey}` } })).statusCode
    await app.broker.forceRefresh('kivra') // the warm-up may race this; either way a grant is held
    for (let i = 0; i < 5; i++) expect(await get()).toBe(200)

    kivra.setFault({ kind: 'server-error', status: 503 })
    await app.broker.forceRefresh('kivra').catch(() => {})
    await app.broker.forceRefresh('kivra').catch(() => {})

    const text = (await app.inject('/metrics')).body
    expect(sample(text, 'credential_broker_token_requests_total', { credential: 'kivra', result: 'hit_local' })).toBe(5)
    expect(sample(text, 'credential_broker_refreshes_total', { credential: 'kivra', result: 'success', reason: 'forced' })).toBeGreaterThanOrEqual(1)
    expect(sample(text, 'credential_broker_refreshes_total', { credential: 'kivra', result: 'transient_error', reason: 'forced' })).toBe(2)
    const expiry = sample(text, 'credential_broker_grant_expiry_seconds', { credential: 'kivra' }) as number
    expect(expiry).toBeGreaterThan(28_000)
    expect(expiry).toBeLessThanOrEqual(28_800)
    const lifetime = sample(text, 'credential_broker_grant_lifetime_seconds', { credential: 'kivra' }) as number
    expect(lifetime).toBeCloseTo(28_800, 0)
    // Planned at about 75 % ± 5 % of the lifetime, i.e. 5.6-6.4 h from now.
    const refreshDue = sample(text, 'credential_broker_grant_refresh_due_seconds', { credential: 'kivra' }) as number
    expect(refreshDue).toBeGreaterThan(0.7 * 28_800 - 60)
    expect(refreshDue).toBeLessThan(0.8 * 28_800)
    expect(sample(text, 'credential_broker_circuit_breaker_state', { provider: 'kivra', endpoint: `kivra:sandbox:${kivra.url}` })).toBe(2) // open after 2 failures
    // Redis is configured here: kind redis, not embedded.
    expect(sample(text, 'credential_broker_redis_up', { kind: 'redis', embedded: 'false' })).toBe(1)
    expect(sample(text, 'credential_broker_vault_authenticated', { kind: 'file', embedded: 'true' })).toBe(1)
    expect(sample(text, 'credential_broker_readiness_state')).toBe(2)
    expect(text).toMatch(/^process_resident_memory_bytes /m)
    expect(text).not.toContain(kivra.secret.client_secret as string)
  })
})

describe('credential_broker_circuit_breaker_state', () => {
  const cleanup = useCleanup()

  it('is per endpoint: one Kivra endpoint closing again does not hide another one that is open', async () => {
    const sandbox = cleanup.add(await startKivraStandIn())
    const production = cleanup.add(await startKivraStandIn({ clientId: sandbox.secret.client_id, clientSecret: sandbox.secret.client_secret }))
    const credential = (id: string, environment: string, url: string): Record<string, unknown> =>
      ({ id, provider: 'kivra', environment, secret: 'secret/kivra', base_url: url, allowed_callers: ['service'], timeout_ms: 500 })
    const testApp = cleanup.add(await buildTestApp({
      credentialsFile: {
        callers: [{ id: 'service', api_key_sha256: sha256Hex(exampleApiKey) }],
        credentials: [credential('kivra-sandbox', 'sandbox', sandbox.url), credential('kivra-production', 'production', production.url)]
      },
      secrets: { 'secret/kivra': { ...sandbox.secret } as Record<string, string> },
      overrides: { brokerOptions: { breakerFailureThreshold: 2, breakerCooldownMs: 200 } }
    }))
    const { app } = testApp
    sandbox.setFault({ kind: 'server-error', status: 503 })
    production.setFault({ kind: 'server-error', status: 503 })
    for (const id of ['kivra-sandbox', 'kivra-production']) {
      await app.broker.forceRefresh(id).catch(() => {})
      await app.broker.forceRefresh(id).catch(() => {})
    }
    // The sandbox recovers: its breaker lets a probe through after the cooldown and closes.
    sandbox.clearFaults()
    await vi.waitFor(async () => { await app.broker.forceRefresh('kivra-sandbox') }, { timeout: 10_000, interval: 300 })

    // (A background retry may catch production's breaker half-open for a moment; it opens again at once.)
    await vi.waitFor(async () => {
      const text = (await app.inject('/metrics')).body
      expect(sample(text, 'credential_broker_circuit_breaker_state', { endpoint: `kivra:sandbox:${sandbox.url}` })).toBe(0)
      expect(sample(text, 'credential_broker_circuit_breaker_state', { endpoint: `kivra:production:${production.url}` })).toBe(2)
    }, { timeout: 5_000, interval: 100 })
  })
})
