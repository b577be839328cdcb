import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { ProviderKind } from '../providers/catalog.js'

/*
 * The broker's Prometheus metrics. Names and label sets are a public contract: the alert rules in
 * deploy/prometheus/alerts.yaml and the README runbook query them, and a test checks every metric an
 * alert uses against what createMetrics() registers.
 *
 * Label values are credential ids and provider kinds only (both come from the validated credentials
 * file), plus the fixed result/reason words below. A token, secret, caller key or upstream message is
 * never a label value: label values are stored verbatim and shown to anyone who can read /metrics.
 */

/** How a token request was answered (`result` of credential_broker_token_requests_total). */
export const tokenRequestResults = ['hit_local', 'hit_store', 'refreshed', 'stale', 'error'] as const
export type TokenRequestResult = typeof tokenRequestResults[number]

/** Outcome of one refresh attempt (`result` of credential_broker_refreshes_total). */
export const refreshResults = ['success', 'transient_error', 'permanent_error', 'fenced_out'] as const
export type RefreshResult = typeof refreshResults[number]

/** Why a refresh ran (`reason` of credential_broker_refreshes_total). */
export const refreshReasons = ['proactive', 'on_demand', 'rejected', 'rotation', 'forced'] as const
export type RefreshReason = typeof refreshReasons[number]

/** Values of credential_broker_circuit_breaker_state. */
export const circuitBreakerStates = { closed: 0, half_open: 1, open: 2 } as const
export type CircuitBreakerStateValue = typeof circuitBreakerStates[keyof typeof circuitBreakerStates]

/** Values of credential_broker_readiness_state (ordered, so `< 2` means "not fully ready"). */
export const readinessStates = { not_ready: 0, degraded: 1, ready: 2 } as const
export type ReadinessStateValue = typeof readinessStates[keyof typeof readinessStates]

/** Prefix of every broker-specific metric; the default process and Node.js metrics keep their usual names. */
export const metricPrefix = 'credential_broker_'

/*
 * Handles expose only the operations the broker needs, with label values typed, so a misspelt result
 * or a missing label is a compile error rather than a silently new time series.
 */
export interface CounterHandle<L extends object> {
  inc: (labels: L, value?: number) => void
  remove: (labels: L) => void
}

export interface HistogramHandle<L extends object> {
  observe: (labels: L, seconds: number) => void
  /** Starts a timer; calling the returned function observes the elapsed seconds and returns them. */
  startTimer: (labels: L) => () => number
  remove: (labels: L) => void
}

export interface LabelledGaugeHandle<L extends object, V extends number = number> {
  set: (labels: L, value: V) => void
  remove: (labels: L) => void
  reset: () => void
}

export interface GaugeHandle<V extends number> {
  set: (value: V) => void
}

export interface CredentialLabel { credential: string }
export interface ProviderLabel { provider: ProviderKind }
export interface TokenRequestLabels extends CredentialLabel { result: TokenRequestResult }
export interface RefreshLabels extends ProviderLabel, CredentialLabel { result: RefreshResult, reason: RefreshReason }

/** One held grant's remaining life, read at scrape time. */
export interface GrantExpiryReading {
  credentialId: string
  /** Seconds until the grant expires (negative once expired). */
  expiresInSeconds: number
}

/**
 * Called on every scrape of credential_broker_grant_expiry_seconds. Must be synchronous, cheap and must
 * not throw (it runs inside the scrape). Returns one reading per credential holding a grant.
 */
export type GrantExpirySource = () => Iterable<GrantExpiryReading>

/** The broker's health as the three health gauges show it. */
export interface HealthReading {
  readiness: keyof typeof readinessStates
  /** Whether Redis answers; undefined leaves credential_broker_redis_up as it is (e.g. embedded store). */
  redisUp?: boolean | undefined
  /** Whether a valid Vault token is held; undefined leaves credential_broker_vault_authenticated as it is. */
  vaultAuthenticated?: boolean | undefined
}

/**
 * Called once per scrape for the health gauges (the three gauges share one call). A rejection leaves
 * the gauges at their previous values rather than failing the whole scrape.
 */
export type HealthSource = () => Promise<HealthReading>

export interface Metrics {
  readonly registry: Registry
  /** credential_broker_token_requests_total{credential, result} */
  readonly tokenRequests: CounterHandle<TokenRequestLabels>
  /** credential_broker_token_request_duration_seconds{credential} */
  readonly tokenRequestDuration: HistogramHandle<CredentialLabel>
  /** credential_broker_refreshes_total{provider, credential, result, reason} */
  readonly refreshes: CounterHandle<RefreshLabels>
  /** credential_broker_refresh_duration_seconds{provider} */
  readonly refreshDuration: HistogramHandle<ProviderLabel>
  /** credential_broker_grant_expiry_seconds{credential}; set directly or through setGrantExpirySource. */
  readonly grantExpiry: LabelledGaugeHandle<CredentialLabel>
  /** credential_broker_lease_contention_total{credential} */
  readonly leaseContention: CounterHandle<CredentialLabel>
  /** credential_broker_stale_grants_served_total{credential} */
  readonly staleGrantsServed: CounterHandle<CredentialLabel>
  /** credential_broker_circuit_breaker_state{provider}: 0 closed, 1 half-open, 2 open (see circuitBreakerStates). */
  readonly circuitBreakerState: LabelledGaugeHandle<ProviderLabel, CircuitBreakerStateValue>
  /** credential_broker_vault_authenticated: 1 when the broker holds a valid Vault token. */
  readonly vaultAuthenticated: GaugeHandle<0 | 1>
  /** credential_broker_redis_up: 1 when the grant store answers. */
  readonly redisUp: GaugeHandle<0 | 1>
  /** credential_broker_readiness_state: 2 ready, 1 degraded, 0 not ready (see readinessStates). */
  readonly readinessState: GaugeHandle<ReadinessStateValue>
  /** credential_broker_secret_rotations_total{credential} */
  readonly secretRotations: CounterHandle<CredentialLabel>
  /**
   * Makes credential_broker_grant_expiry_seconds computed at scrape time from `source` (replacing any
   * values set directly), so the gauge is never older than the scrape. Pass undefined to stop.
   */
  setGrantExpirySource: (source: GrantExpirySource | undefined) => void
  /**
   * Makes readiness_state, redis_up and vault_authenticated read from `source` at scrape time, so they
   * are current even when nothing calls /readyz (e.g. under Docker, whose healthcheck uses /healthz).
   * Values set directly still apply between scrapes. Pass undefined to stop.
   */
  setHealthSource: (source: HealthSource | undefined) => void
  /**
   * Creates the zero-valued series of one credential. Prometheus' rate() and increase() cannot see the
   * first increment of a series that did not exist before it, so without this the first permanent
   * error of a credential would never fire an alert. Call once per configured credential at start;
   * `mintsTokens: false` (signing-only credentials) skips the token and refresh series.
   */
  initCredential: (credential: { id: string, provider: ProviderKind, mintsTokens?: boolean }) => void
}

export interface CreateMetricsOptions {
  /**
   * Also collect prom-client's default process and Node.js metrics (CPU, memory, event loop lag, GC).
   * Defaults to true. Each collection installs a GC observer and an event-loop monitor that live as long
   * as the process, so tests that build many apps may turn it off.
   */
  defaultMetrics?: boolean
}

/** Buckets from 100 µs: a local-cache hit takes well under a millisecond; a wait on a refresh up to ~1 s. */
const tokenRequestBuckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]
/** A provider mint is a network round trip; the adapters time out at 10 s by default (timeout_ms). */
const refreshBuckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/**
 * Creates and registers the broker's metrics on `registry` (a new Registry when omitted, never
 * prom-client's global one, so several apps in one process, as in tests, do not collide).
 */
export function createMetrics (registry: Registry = new Registry(), options: CreateMetricsOptions = {}): Metrics {
  const registers = [registry]
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry })

  const tokenRequests = new Counter({
    name: `${metricPrefix}token_requests_total`,
    help: 'Token requests by credential and how they were answered (hit_local, hit_store, refreshed, stale, error).',
    labelNames: ['credential', 'result'] as const,
    registers
  })
  const tokenRequestDuration = new Histogram({
    name: `${metricPrefix}token_request_duration_seconds`,
    help: 'Time to answer a token request inside the broker, from authorization to a grant in hand.',
    labelNames: ['credential'] as const,
    buckets: tokenRequestBuckets,
    registers
  })
  const refreshes = new Counter({
    name: `${metricPrefix}refreshes_total`,
    help: 'Refresh attempts by provider, credential, result (success, transient_error, permanent_error, fenced_out) and reason (proactive, on_demand, rejected, rotation, forced).',
    labelNames: ['provider', 'credential', 'result', 'reason'] as const,
    registers
  })
  const refreshDuration = new Histogram({
    name: `${metricPrefix}refresh_duration_seconds`,
    help: 'Duration of one provider mint or refresh call.',
    labelNames: ['provider'] as const,
    buckets: refreshBuckets,
    registers
  })

  let grantExpirySource: GrantExpirySource | undefined
  const grantExpiry = new Gauge({
    name: `${metricPrefix}grant_expiry_seconds`,
    help: 'Seconds until the grant this replica holds for a credential expires.',
    labelNames: ['credential'] as const,
    registers,
    collect () {
      if (grantExpirySource === undefined) return
      // Reset first so a credential that no longer holds a grant disappears instead of freezing at its last value.
      this.reset()
      for (const reading of grantExpirySource()) this.set({ credential: reading.credentialId }, reading.expiresInSeconds)
    }
  })
  const leaseContention = new Counter({
    name: `${metricPrefix}lease_contention_total`,
    help: 'Refresh leases not taken because another replica or request held them.',
    labelNames: ['credential'] as const,
    registers
  })
  const staleGrantsServed = new Counter({
    name: `${metricPrefix}stale_grants_served_total`,
    help: 'Grants served past their refresh time because refreshing failed (stale-if-error; never past expiry).',
    labelNames: ['credential'] as const,
    registers
  })
  const circuitBreakerState = new Gauge({
    name: `${metricPrefix}circuit_breaker_state`,
    help: 'Per-provider circuit breaker: 0 closed, 1 half-open, 2 open.',
    labelNames: ['provider'] as const,
    registers
  })
  const health = createHealthGauges(registers)
  const secretRotations = new Counter({
    name: `${metricPrefix}secret_rotations_total`,
    help: 'New versions of a credential\'s client secret seen in Vault (each triggers a re-mint).',
    labelNames: ['credential'] as const,
    registers
  })

  return {
    registry,
    tokenRequests,
    tokenRequestDuration,
    refreshes,
    refreshDuration,
    grantExpiry,
    leaseContention,
    staleGrantsServed,
    circuitBreakerState,
    vaultAuthenticated: health.vaultAuthenticated,
    redisUp: health.redisUp,
    readinessState: health.readinessState,
    secretRotations,
    setGrantExpirySource (source) {
      grantExpirySource = source
    },
    setHealthSource: health.setSource,
    initCredential ({ id, provider, mintsTokens = true }) {
      const credential = { credential: id }
      leaseContention.inc(credential, 0)
      staleGrantsServed.inc(credential, 0)
      secretRotations.inc(credential, 0)
      if (!mintsTokens) return
      for (const result of tokenRequestResults) tokenRequests.inc({ credential: id, result }, 0)
      for (const result of refreshResults) {
        for (const reason of refreshReasons) refreshes.inc({ provider, credential: id, result, reason }, 0)
      }
    }
  }
}

/** readiness_state, redis_up and vault_authenticated, read from one health source at scrape time. */
function createHealthGauges (registers: Registry[]): { vaultAuthenticated: Gauge, redisUp: Gauge, readinessState: Gauge, setSource: (source: HealthSource | undefined) => void } {
  // Scrapes collect all metrics concurrently: the three health gauges share one in-flight reading.
  let healthSource: HealthSource | undefined
  let healthInFlight: Promise<HealthReading | undefined> | undefined
  const readHealth = async (): Promise<HealthReading | undefined> => {
    if (healthSource === undefined) return undefined
    healthInFlight ??= healthSource().catch(() => undefined).finally(() => { healthInFlight = undefined })
    return await healthInFlight
  }
  const binary = (value: boolean): 0 | 1 => (value ? 1 : 0)

  const vaultAuthenticated = new Gauge({
    name: `${metricPrefix}vault_authenticated`,
    help: '1 when the broker holds a valid Vault token, else 0 (also 0 in embedded mode, which has no Vault).',
    registers,
    async collect () {
      const reading = await readHealth()
      if (reading?.vaultAuthenticated !== undefined) this.set(binary(reading.vaultAuthenticated))
    }
  })
  const redisUp = new Gauge({
    name: `${metricPrefix}redis_up`,
    help: '1 when Redis answers, else 0 (also 0 in embedded mode, which has no Redis).',
    registers,
    async collect () {
      const reading = await readHealth()
      if (reading?.redisUp !== undefined) this.set(binary(reading.redisUp))
    }
  })
  const readinessState = new Gauge({
    name: `${metricPrefix}readiness_state`,
    help: 'Readiness as /readyz reports it: 2 ready, 1 degraded, 0 not ready.',
    registers,
    async collect () {
      const reading = await readHealth()
      if (reading !== undefined) this.set(readinessStates[reading.readiness])
    }
  })
  return { vaultAuthenticated, redisUp, readinessState, setSource: source => { healthSource = source } }
}
