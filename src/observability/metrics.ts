import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { ProviderKind } from '../providers/catalog.js'
import { createPendingCounts, LocallyCountedHistogram } from './token-tally.js'

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
/**
 * One circuit breaker: breakers are per provider endpoint, `<provider>:<environment>` plus `:<base_url or
 * token_url>` when the credential overrides the documented host (e.g. `kivra:production`).
 */
export interface EndpointLabels extends ProviderLabel { endpoint: string }
/**
 * What backs a dependency gauge: `kind` redis | memory (store), vault | file (secrets); `embedded` "true"
 * for the in-process defaults (memory store, file secrets), which have nothing to page anyone about.
 */
export interface DependencyLabels { kind: string, embedded: 'true' | 'false' }
export interface TokenRequestLabels extends CredentialLabel { result: TokenRequestResult }
export interface RefreshLabels extends ProviderLabel, CredentialLabel { result: RefreshResult, reason: RefreshReason }
/** A proxied request: its method (one the route serves) and the answer's status class ("2xx" … "5xx"). */
export interface ProxyRequestLabels extends CredentialLabel { method: string, status_class: '1xx' | '2xx' | '3xx' | '4xx' | '5xx' }

/** One held grant's remaining life, read at scrape time. */
export interface GrantExpiryReading {
  credentialId: string
  /** Seconds until the grant expires (negative once expired). */
  expiresInSeconds: number
  /** The grant's whole lifetime (expiry minus when it was obtained), in seconds. */
  lifetimeSeconds?: number | undefined
  /**
   * Seconds until the grant's planned proactive refresh (negative once that moment has passed and the grant
   * was not replaced). The planned moment is the latest one: pacing only ever moves a refresh earlier.
   */
  refreshDueInSeconds?: number | undefined
  /** The grant was minted with the previous secret version (secret rollover). */
  secretRolledBack?: boolean | undefined
}

/**
 * Called on every scrape of credential_broker_grant_expiry_seconds. Must be synchronous, cheap and must
 * not throw (it runs inside the scrape). Returns one reading per credential holding a grant.
 */
export type GrantExpirySource = () => Iterable<GrantExpiryReading>

/** The broker's health as the three health gauges show it. */
export interface HealthReading {
  readiness: keyof typeof readinessStates
  /** The grant store: whether it answers (the memory store always does); undefined leaves credential_broker_redis_up as it is. */
  store?: { kind: 'redis' | 'memory', up: boolean } | undefined
  /**
   * The secret source: whether it can be used (Vault: a valid token is held; the file source has nothing to
   * authenticate); undefined leaves credential_broker_vault_authenticated as it is.
   */
  secrets?: { kind: 'vault' | 'file', authenticated: boolean } | undefined
}

/**
 * Called once per scrape for the health gauges (the three gauges share one call). A rejection leaves
 * the gauges at their previous values rather than failing the whole scrape.
 */
export type HealthSource = () => Promise<HealthReading>

export interface Metrics {
  readonly registry: Registry
  /**
   * One token request answered: token_requests_total{credential, result}, stale_grants_served_total for a
   * stale grant, and token_request_duration_seconds. Counted locally and folded into prom-client at scrape
   * (token-tally.ts), so the token route's cache hit hashes no label set.
   */
  tokenServed: (credential: string, result: TokenRequestResult, seconds: number) => void
  /** credential_broker_token_requests_total{credential, result} */
  readonly tokenRequests: CounterHandle<TokenRequestLabels>
  /** credential_broker_token_request_duration_seconds{credential} */
  readonly tokenRequestDuration: HistogramHandle<CredentialLabel>
  /** credential_broker_refreshes_total{provider, credential, result, reason} */
  readonly refreshes: CounterHandle<RefreshLabels>
  /** credential_broker_refresh_duration_seconds{provider} */
  readonly refreshDuration: HistogramHandle<ProviderLabel>
  /** credential_broker_proxy_requests_total{credential, method, status_class} */
  readonly proxyRequests: CounterHandle<ProxyRequestLabels>
  /** credential_broker_proxy_request_duration_seconds{credential}: until the answer was sent, body included. */
  readonly proxyRequestDuration: HistogramHandle<CredentialLabel>
  /** credential_broker_grant_expiry_seconds{credential}; set directly or through setGrantExpirySource. */
  readonly grantExpiry: LabelledGaugeHandle<CredentialLabel>
  /** credential_broker_grant_lifetime_seconds{credential}: the held grant's whole lifetime (setGrantExpirySource). */
  readonly grantLifetime: LabelledGaugeHandle<CredentialLabel>
  /** credential_broker_grant_refresh_due_seconds{credential}: until the held grant's planned refresh (setGrantExpirySource). */
  readonly grantRefreshDue: LabelledGaugeHandle<CredentialLabel>
  /** credential_broker_lease_contention_total{credential} */
  readonly leaseContention: CounterHandle<CredentialLabel>
  /** credential_broker_stale_grants_served_total{credential} */
  readonly staleGrantsServed: CounterHandle<CredentialLabel>
  /** credential_broker_circuit_breaker_state{provider, endpoint}: 0 closed, 1 half-open, 2 open (see circuitBreakerStates). */
  readonly circuitBreakerState: LabelledGaugeHandle<EndpointLabels, CircuitBreakerStateValue>
  /** credential_broker_vault_authenticated{kind, embedded}: 1 when the secret source can be used (Vault: a valid token is held). */
  readonly vaultAuthenticated: LabelledGaugeHandle<DependencyLabels, 0 | 1>
  /** credential_broker_redis_up{kind, embedded}: 1 when the grant store answers. */
  readonly redisUp: LabelledGaugeHandle<DependencyLabels, 0 | 1>
  /** credential_broker_readiness_state: 2 ready, 1 degraded, 0 not ready (see readinessStates). */
  readonly readinessState: GaugeHandle<ReadinessStateValue>
  /** credential_broker_secret_rotations_total{credential} */
  readonly secretRotations: CounterHandle<CredentialLabel>
  /** credential_broker_secret_rollbacks_total{credential}: grants minted with the previous secret version. */
  readonly secretRollbacks: CounterHandle<CredentialLabel>
  /** credential_broker_secret_rolled_back{credential}, from the grant source at scrape time. */
  readonly secretRolledBack: LabelledGaugeHandle<CredentialLabel>
  /**
   * Makes credential_broker_grant_expiry_seconds, _grant_lifetime_seconds and _grant_refresh_due_seconds
   * computed at scrape time from `source` (replacing any values set directly), so they are never older
   * than the scrape. Pass undefined to stop.
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
/** A proxied request is an upstream round trip plus its body; a loopback one takes about a millisecond. */
const proxyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/**
 * Creates and registers the broker's metrics on `registry` (a new Registry when omitted, never
 * prom-client's global one, so several apps in one process, as in tests, do not collide).
 */
export function createMetrics (registry: Registry = new Registry(), options: CreateMetricsOptions = {}): Metrics {
  const registers = [registry]
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry })
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]): Counter<L> => new Counter({ name: `${metricPrefix}${name}`, help, labelNames, registers })

  const histogram = <L extends string>(name: string, help: string, labelNames: readonly L[], buckets: number[]): Histogram<L> => new Histogram({ name: `${metricPrefix}${name}`, help, labelNames, buckets, registers })

  const pending = createPendingCounts()
  const tokenRequests = new Counter({
    name: `${metricPrefix}token_requests_total`,
    help: 'Token requests by credential and how they were answered (hit_local, hit_store, refreshed, stale, error).',
    labelNames: ['credential', 'result'] as const,
    registers,
    collect () { pending.foldInto(this, 'results') }
  })
  const tokenRequestDuration = new LocallyCountedHistogram({
    name: `${metricPrefix}token_request_duration_seconds`,
    help: 'Time to answer a token request inside the broker, from authorization to a grant in hand.',
    labelNames: ['credential'] as const,
    buckets: tokenRequestBuckets,
    registers
  })
  const refreshes = counter('refreshes_total', 'Refresh attempts by provider, credential, result (success, transient_error, permanent_error, fenced_out) and reason (proactive, on_demand, rejected, rotation, forced).', ['provider', 'credential', 'result', 'reason'] as const)
  const refreshDuration = histogram('refresh_duration_seconds', 'Duration of one provider mint or refresh call.', ['provider'] as const, refreshBuckets)
  const proxyRequests = counter('proxy_requests_total', 'Requests through the proxy route by credential, method and the answer\'s status class (upstream answers and the broker\'s own refusals alike).', ['credential', 'method', 'status_class'] as const)
  const proxyRequestDuration = histogram('proxy_request_duration_seconds', 'Time to answer a proxied request, from its arrival to the last byte of the answer (a token rejection\'s refresh and retry included).', ['credential'] as const, proxyBuckets)

  const grants = createGrantGauges(registers)
  const leaseContention = counter('lease_contention_total', 'Refresh leases not taken because another replica or request held them.', ['credential'] as const)
  const staleGrantsServed = new Counter({
    name: `${metricPrefix}stale_grants_served_total`,
    help: 'Grants served past their refresh time because refreshing failed (stale-if-error; never past expiry).',
    labelNames: ['credential'] as const,
    registers,
    collect () { pending.foldInto(this, 'stale_grant') }
  })
  const circuitBreakerState = new Gauge({
    name: `${metricPrefix}circuit_breaker_state`,
    help: 'Circuit breaker of one provider endpoint (provider:environment[:host override]): 0 closed, 1 half-open, 2 open.',
    labelNames: ['provider', 'endpoint'] as const,
    registers
  })
  const health = createHealthGauges(registers)
  const secretRotations = counter('secret_rotations_total', 'New versions of a credential\'s client secret seen in Vault (each triggers a re-mint).', ['credential'] as const)
  const secretRollbacks = counter('secret_rollbacks_total', 'Grants minted with the previous secret version because the provider rejected the current one (secret rollover).', ['credential'] as const)

  return {
    registry,
    tokenServed (credential, result, seconds) {
      pending.add(credential, result)
      if (result === 'stale') pending.add(credential, 'stale_grant')
      tokenRequestDuration.observe({ credential }, seconds)
    },
    tokenRequests,
    tokenRequestDuration,
    refreshes,
    refreshDuration,
    proxyRequests,
    proxyRequestDuration,
    grantExpiry: grants.grantExpiry,
    grantLifetime: grants.grantLifetime,
    grantRefreshDue: grants.grantRefreshDue,
    leaseContention,
    staleGrantsServed,
    circuitBreakerState,
    vaultAuthenticated: health.vaultAuthenticated,
    redisUp: health.redisUp,
    readinessState: health.readinessState,
    secretRotations,
    secretRollbacks,
    secretRolledBack: grants.secretRolledBack,
    setGrantExpirySource: grants.setSource,
    setHealthSource: health.setSource,
    initCredential ({ id, provider, mintsTokens = true }) {
      const credential = { credential: id }
      leaseContention.inc(credential, 0)
      staleGrantsServed.inc(credential, 0)
      secretRotations.inc(credential, 0)
      secretRollbacks.inc(credential, 0)
      if (!mintsTokens) return
      for (const result of tokenRequestResults) tokenRequests.inc({ credential: id, result }, 0)
      for (const result of refreshResults) {
        for (const reason of refreshReasons) refreshes.inc({ provider, credential: id, result, reason }, 0)
      }
    }
  }
}

/** readiness_state, redis_up and vault_authenticated, read from one health source at scrape time. */
function createHealthGauges (registers: Registry[]): { vaultAuthenticated: Gauge<'kind' | 'embedded'>, redisUp: Gauge<'kind' | 'embedded'>, readinessState: Gauge, setSource: (source: HealthSource | undefined) => void } {
  // Scrapes collect all metrics concurrently: the three health gauges share one in-flight reading.
  let healthSource: HealthSource | undefined
  let healthInFlight: Promise<HealthReading | undefined> | undefined
  const readHealth = async (): Promise<HealthReading | undefined> => {
    if (healthSource === undefined) return undefined
    healthInFlight ??= healthSource().catch(() => undefined).finally(() => { healthInFlight = undefined })
    return await healthInFlight
  }
  const binary = (value: boolean): 0 | 1 => (value ? 1 : 0)

  const dependencyLabels = (kind: string, embedded: boolean): DependencyLabels => ({ kind, embedded: embedded ? 'true' : 'false' })
  const vaultAuthenticated = new Gauge({
    name: `${metricPrefix}vault_authenticated`,
    help: '1 when the secret source can be used: Vault (kind="vault") with a valid token; the embedded file source (kind="file", embedded="true") has nothing to authenticate.',
    labelNames: ['kind', 'embedded'] as const,
    registers,
    async collect () {
      const secrets = (await readHealth())?.secrets
      if (secrets === undefined) return
      this.reset()
      this.set(dependencyLabels(secrets.kind, secrets.kind === 'file'), binary(secrets.authenticated))
    }
  })
  const redisUp = new Gauge({
    name: `${metricPrefix}redis_up`,
    help: '1 when the grant store answers: Redis (kind="redis"), or the embedded in-memory store (kind="memory", embedded="true"), which always does.',
    labelNames: ['kind', 'embedded'] as const,
    registers,
    async collect () {
      const store = (await readHealth())?.store
      if (store === undefined) return
      this.reset()
      this.set(dependencyLabels(store.kind, store.kind === 'memory'), binary(store.up))
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

/** The per-credential grant gauges (expiry, lifetime, refresh due), computed from one grant source at scrape time. */
function createGrantGauges (registers: Registry[]): { grantExpiry: Gauge<'credential'>, grantLifetime: Gauge<'credential'>, grantRefreshDue: Gauge<'credential'>, secretRolledBack: Gauge<'credential'>, setSource: (source: GrantExpirySource | undefined) => void } {
  let grantExpirySource: GrantExpirySource | undefined
  /** A gauge per credential computed from the grant source at scrape time. */
  const grantGauge = (name: string, help: string, value: (reading: GrantExpiryReading) => number | undefined): Gauge<'credential'> => new Gauge({
    name: `${metricPrefix}${name}`,
    help,
    labelNames: ['credential'] as const,
    registers,
    collect () {
      if (grantExpirySource === undefined) return
      // Reset first so a credential that no longer holds a grant disappears instead of freezing at its last value.
      this.reset()
      for (const reading of grantExpirySource()) {
        const seconds = value(reading)
        if (seconds !== undefined) this.set({ credential: reading.credentialId }, seconds)
      }
    }
  })
  const grantExpiry = grantGauge('grant_expiry_seconds', 'Seconds until the grant this replica holds for a credential expires.', reading => reading.expiresInSeconds)
  // Next to the expiry, so an alert can be relative to the lifetime: a 5-minute token always has less than 5 minutes left.
  const grantLifetime = grantGauge('grant_lifetime_seconds', 'Whole lifetime of the grant this replica holds for a credential (expiry minus when it was obtained).', reading => reading.lifetimeSeconds)
  const grantRefreshDue = grantGauge('grant_refresh_due_seconds', 'Seconds until the planned proactive refresh of the grant this replica holds (negative once it is overdue).', reading => reading.refreshDueInSeconds)
  const secretRolledBack = grantGauge('secret_rolled_back', '1 while the grant this replica holds was minted with the previous secret version because the provider rejected the current one (secret rollover).', reading => reading.secretRolledBack === undefined ? undefined : Number(reading.secretRolledBack))
  return { grantExpiry, grantLifetime, grantRefreshDue, secretRolledBack, setSource: source => { grantExpirySource = source } }
}
