import { Registry, register as globalRegistry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { createMetrics, refreshReasons, refreshResults, tokenRequestResults, type GrantExpiryReading } from '../../src/observability/metrics.js'

/** The metric contract that alerts, dashboards and the README rely on: name → type and label names. */
const contract: Record<string, { type: 'counter' | 'gauge' | 'histogram', labels: string[] }> = {
  credential_broker_token_requests_total: { type: 'counter', labels: ['credential', 'result'] },
  credential_broker_token_request_duration_seconds: { type: 'histogram', labels: ['credential'] },
  credential_broker_refreshes_total: { type: 'counter', labels: ['credential', 'provider', 'reason', 'result'] },
  credential_broker_refresh_duration_seconds: { type: 'histogram', labels: ['provider'] },
  credential_broker_grant_expiry_seconds: { type: 'gauge', labels: ['credential'] },
  credential_broker_grant_lifetime_seconds: { type: 'gauge', labels: ['credential'] },
  credential_broker_grant_refresh_due_seconds: { type: 'gauge', labels: ['credential'] },
  credential_broker_lease_contention_total: { type: 'counter', labels: ['credential'] },
  credential_broker_stale_grants_served_total: { type: 'counter', labels: ['credential'] },
  credential_broker_circuit_breaker_state: { type: 'gauge', labels: ['endpoint', 'provider'] },
  credential_broker_vault_authenticated: { type: 'gauge', labels: ['embedded', 'kind'] },
  credential_broker_redis_up: { type: 'gauge', labels: ['embedded', 'kind'] },
  credential_broker_readiness_state: { type: 'gauge', labels: [] },
  credential_broker_secret_rotations_total: { type: 'counter', labels: ['credential'] },
  credential_broker_secret_rollbacks_total: { type: 'counter', labels: ['credential'] },
  credential_broker_secret_rolled_back: { type: 'gauge', labels: ['credential'] },
  credential_broker_proxy_requests_total: { type: 'counter', labels: ['credential', 'method', 'status_class'] },
  credential_broker_proxy_request_duration_seconds: { type: 'histogram', labels: ['credential'] }
}

async function valuesOf (registry: Registry, name: string): Promise<Array<{ labels: Record<string, string | number>, value: number, metricName?: string }>> {
  const metric = (await registry.getMetricsAsJSON()).find(m => m.name === name)
  if (metric === undefined) throw new Error(`${name} is not registered`)
  return metric.values as Array<{ labels: Record<string, string | number>, value: number, metricName?: string }>
}

describe('createMetrics', () => {
  it('can be called again on a fresh registry, and by default never touches the global one', () => {
    expect(() => {
      createMetrics(new Registry())
      createMetrics(new Registry())
      createMetrics()
      createMetrics()
    }).not.toThrow()
    expect(globalRegistry.getMetricsAsArray().some(metric => metric.name.startsWith('credential_broker_'))).toBe(false)
  })

  it('exposes every metric of the contract, with its type, in the scrape text', async () => {
    const { registry } = createMetrics(new Registry(), { defaultMetrics: false })
    const text = await registry.metrics()
    for (const [name, { type }] of Object.entries(contract)) {
      expect(text).toContain(`# TYPE ${name} ${type}\n`)
      expect(text).toMatch(new RegExp(`^# HELP ${name} \\S`, 'm'))
    }
  })

  it('uses exactly the contract\'s label names on every metric', async () => {
    const metrics = createMetrics(new Registry(), { defaultMetrics: false })
    metrics.initCredential({ id: 'kivra-sandbox', provider: 'kivra' })
    metrics.tokenRequestDuration.observe({ credential: 'kivra-sandbox' }, 0.0003)
    metrics.refreshDuration.observe({ provider: 'kivra' }, 0.4)
    metrics.grantExpiry.set({ credential: 'kivra-sandbox' }, 1200)
    metrics.grantLifetime.set({ credential: 'kivra-sandbox' }, 28_800)
    metrics.grantRefreshDue.set({ credential: 'kivra-sandbox' }, 600)
    metrics.secretRolledBack.set({ credential: 'kivra-sandbox' }, 0)
    metrics.circuitBreakerState.set({ provider: 'kivra', endpoint: 'kivra:sandbox' }, 2)
    metrics.vaultAuthenticated.set({ kind: 'vault', embedded: 'false' }, 1)
    metrics.redisUp.set({ kind: 'redis', embedded: 'false' }, 1)
    metrics.readinessState.set(2)
    metrics.proxyRequests.inc({ credential: 'kivra-sandbox', method: 'GET', status_class: '2xx' })
    metrics.proxyRequestDuration.observe({ credential: 'kivra-sandbox' }, 0.004)
    const scraped = await metrics.registry.getMetricsAsJSON()
    const ours = scraped.filter(metric => metric.name.startsWith('credential_broker_'))
    expect(ours.map(metric => metric.name).sort()).toEqual(Object.keys(contract).sort())
    for (const metric of ours) {
      const labels = [...new Set(metric.values.flatMap(value => Object.keys(value.labels)).filter(label => label !== 'le'))].sort()
      expect(labels, metric.name).toEqual(contract[metric.name]!.labels)
    }
  })

  it('adds the default process and Node.js metrics under their usual names unless told not to', async () => {
    const withDefaults = await createMetrics(new Registry()).registry.metrics()
    expect(withDefaults).toContain('process_cpu_user_seconds_total')
    expect(withDefaults).toContain('nodejs_eventloop_lag_seconds')
    const without = await createMetrics(new Registry(), { defaultMetrics: false }).registry.metrics()
    expect(without).not.toContain('process_cpu_user_seconds_total')
  })

  it('has token request buckets from 100 µs to 1 s, so local-cache hits are resolved', async () => {
    const metrics = createMetrics(new Registry(), { defaultMetrics: false })
    metrics.tokenRequestDuration.observe({ credential: 'kivra-sandbox' }, 0.00005)
    const buckets = (await valuesOf(metrics.registry, 'credential_broker_token_request_duration_seconds'))
      .filter(value => value.metricName?.endsWith('_bucket') === true && value.labels.le !== '+Inf')
      .map(value => Number(value.labels.le))
    expect(buckets[0]).toBe(0.0001)
    expect(buckets.at(-1)).toBe(1)
    expect(buckets.filter(le => le < 0.001).length).toBeGreaterThanOrEqual(3)
  })
})

describe('initCredential', () => {
  it('creates zero-valued series so that the first error is visible to rate() and increase()', async () => {
    const metrics = createMetrics(new Registry(), { defaultMetrics: false })
    metrics.initCredential({ id: 'klavi-sandbox', provider: 'klavi' })
    const requests = await valuesOf(metrics.registry, 'credential_broker_token_requests_total')
    expect(requests.map(value => value.labels.result).sort()).toEqual([...tokenRequestResults].sort())
    const refreshes = await valuesOf(metrics.registry, 'credential_broker_refreshes_total')
    expect(refreshes).toHaveLength(refreshResults.length * refreshReasons.length)
    expect(refreshes.every(value => value.value === 0 && value.labels.provider === 'klavi')).toBe(true)
    for (const name of ['credential_broker_lease_contention_total', 'credential_broker_stale_grants_served_total', 'credential_broker_secret_rotations_total', 'credential_broker_secret_rollbacks_total']) {
      expect(await valuesOf(metrics.registry, name), name).toEqual([expect.objectContaining({ value: 0, labels: { credential: 'klavi-sandbox' } })])
    }
  })

  it('skips token and refresh series for a signing-only credential', async () => {
    const metrics = createMetrics(new Registry(), { defaultMetrics: false })
    metrics.initCredential({ id: 'sir-giving-sandbox', provider: 'sir-giving', mintsTokens: false })
    expect(await valuesOf(metrics.registry, 'credential_broker_token_requests_total')).toEqual([])
    expect(await valuesOf(metrics.registry, 'credential_broker_refreshes_total')).toEqual([])
    expect(await valuesOf(metrics.registry, 'credential_broker_secret_rotations_total')).toHaveLength(1)
  })

  it('does not reset counts already made', async () => {
    const metrics = createMetrics(new Registry(), { defaultMetrics: false })
    metrics.tokenRequests.inc({ credential: 'kigo-sandbox', result: 'hit_local' })
    metrics.initCredential({ id: 'kigo-sandbox', provider: 'kigo' })
    const hits = (await valuesOf(metrics.registry, 'credential_broker_token_requests_total')).find(value => value.labels.result === 'hit_local')
    expect(hits?.value).toBe(1)
  })
})

describe('credential_broker_grant_expiry_seconds', () => {
  it('is read from the registered source at every scrape, dropping credentials that no longer hold a grant', async () => {
    const metrics = createMetrics(new Registry(), { defaultMetrics: false })
    let readings: GrantExpiryReading[] = [
      { credentialId: 'kivra-sandbox', expiresInSeconds: 21_600 },
      { credentialId: 'kigo-sandbox', expiresInSeconds: 240 }
    ]
    metrics.setGrantExpirySource(() => readings)
    expect(await valuesOf(metrics.registry, 'credential_broker_grant_expiry_seconds')).toEqual(expect.arrayContaining([
      expect.objectContaining({ labels: { credential: 'kivra-sandbox' }, value: 21_600 }),
      expect.objectContaining({ labels: { credential: 'kigo-sandbox' }, value: 240 })
    ]))
    readings = [{ credentialId: 'kivra-sandbox', expiresInSeconds: 21_570 }]
    expect(await valuesOf(metrics.registry, 'credential_broker_grant_expiry_seconds')).toEqual([
      expect.objectContaining({ labels: { credential: 'kivra-sandbox' }, value: 21_570 })
    ])
  })

  it('comes with the grant\'s lifetime and the seconds until its planned refresh, from the same source', async () => {
    const metrics = createMetrics(new Registry(), { defaultMetrics: false })
    metrics.setGrantExpirySource(() => [
      { credentialId: 'kigo-sandbox', expiresInSeconds: 240, lifetimeSeconds: 300, refreshDueInSeconds: 165 },
      { credentialId: 'klavi-sandbox', expiresInSeconds: 20, lifetimeSeconds: 1800, refreshDueInSeconds: -430 }
    ])
    expect(await valuesOf(metrics.registry, 'credential_broker_grant_lifetime_seconds')).toEqual([
      expect.objectContaining({ labels: { credential: 'kigo-sandbox' }, value: 300 }),
      expect.objectContaining({ labels: { credential: 'klavi-sandbox' }, value: 1800 })
    ])
    expect(await valuesOf(metrics.registry, 'credential_broker_grant_refresh_due_seconds')).toEqual([
      expect.objectContaining({ labels: { credential: 'kigo-sandbox' }, value: 165 }),
      expect.objectContaining({ labels: { credential: 'klavi-sandbox' }, value: -430 })
    ])
  })

  it('keeps values set directly when no source is registered', async () => {
    const metrics = createMetrics(new Registry(), { defaultMetrics: false })
    metrics.grantExpiry.set({ credential: 'klavi-sandbox' }, 1500)
    expect(await valuesOf(metrics.registry, 'credential_broker_grant_expiry_seconds')).toEqual([
      expect.objectContaining({ labels: { credential: 'klavi-sandbox' }, value: 1500 })
    ])
  })
})

describe('health gauges', () => {
  const healthGauges = ['credential_broker_readiness_state', 'credential_broker_redis_up', 'credential_broker_vault_authenticated']
  const scrapeHealth = async (registry: Registry): Promise<number[]> =>
    await Promise.all(healthGauges.map(async name => (await valuesOf(registry, name))[0]!.value))

  it('read the registered health source once per scrape', async () => {
    const metrics = createMetrics(new Registry(), { defaultMetrics: false })
    let calls = 0
    metrics.setHealthSource(async () => { calls++; return { readiness: 'degraded', store: { kind: 'redis', up: false }, secrets: { kind: 'vault', authenticated: true } } })
    const text = await metrics.registry.metrics()
    expect(calls).toBe(1)
    expect(text).toMatch(/^credential_broker_readiness_state 1$/m)
    expect(text).toMatch(/^credential_broker_redis_up\{kind="redis",embedded="false"\} 0$/m)
    expect(text).toMatch(/^credential_broker_vault_authenticated\{kind="vault",embedded="false"\} 1$/m)
  })

  it('label the embedded store and secret source embedded="true", and show them working, so nothing pages for them', async () => {
    const metrics = createMetrics(new Registry(), { defaultMetrics: false })
    metrics.setHealthSource(async () => ({ readiness: 'ready', store: { kind: 'memory', up: true }, secrets: { kind: 'file', authenticated: true } }))
    const text = await metrics.registry.metrics()
    expect(text).toMatch(/^credential_broker_redis_up\{kind="memory",embedded="true"\} 1$/m)
    expect(text).toMatch(/^credential_broker_vault_authenticated\{kind="file",embedded="true"\} 1$/m)
    expect(text).not.toMatch(/^credential_broker_(redis_up|vault_authenticated)\S* 0$/m)
  })

  it('keep their last values when the source fails or does not know a component', async () => {
    const metrics = createMetrics(new Registry(), { defaultMetrics: false })
    metrics.readinessState.set(2)
    metrics.redisUp.set({ kind: 'redis', embedded: 'false' }, 1)
    metrics.vaultAuthenticated.set({ kind: 'vault', embedded: 'false' }, 1)
    metrics.setHealthSource(async () => { throw new Error('redis ping timed out') })
    expect(await scrapeHealth(metrics.registry)).toEqual([2, 1, 1])
    metrics.setHealthSource(async () => ({ readiness: 'not_ready' }))
    expect(await scrapeHealth(metrics.registry)).toEqual([0, 1, 1])
  })
})
