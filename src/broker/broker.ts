/**
 * The broker: the token lifecycle composed from its parts. This file wires the modules together and owns
 * start, drain and close; each protocol lives in its own module:
 *
 *   token-service.ts   getToken / reportRejected / forceRefresh: local cache → store → one refresh
 *   single-flight.ts   one refresh per grant key on this replica; caller deadlines
 *   cluster-refresh.ts one refresh per grant key in the cluster: lease → re-read → mint → fenced write
 *   minter.ts          exactly one provider call (breaker, secret, refresh-or-mint, one secret re-read)
 *   scheduler.ts       proactive refresh on a timer heap, paced; retries after failures
 *   refresh-policy.ts  pure rules: when to refresh, whether a grant serves a min_ttl
 *   grant-state.ts     the state of each credential and grant key
 *   notices.ts         other replicas' grant notices, secret rotations
 *   signer.ts, status.ts
 *
 * docs/architecture.md draws the request path and the refresh protocol.
 */
import { systemClock } from '../time.js'
import { ProviderError } from '../errors.js'
import { defaultLocalRetry, retryDelayAfter } from './refresh-policy.js'
import { createBreakerRegistry } from './circuit-breaker.js'
import { createFailureLog, ongoingOutage } from './failure-log.js'
import { createClusterRefresh, type Adopt } from './cluster-refresh.js'
import { createCredentialTable } from './credential-table.js'
import type { GrantState } from './grant-state.js'
import { createUserSessionAdapter } from './user-sessions.js'
import { descriptorOf } from '../providers/catalog.js'
import { createLifecycle } from './lifecycle.js'
import { createMinter } from './minter.js'
import { subscribeToNotices } from './notices.js'
import { createScheduler } from './scheduler.js'
import { createSecretReader } from './secret-reader.js'
import { createSharedStore } from './shared-store.js'
import { createSigner } from './signer.js'
import { createSingleFlight } from './single-flight.js'
import { anyGrantStored, brokerHealth, credentialStatus, type Holdings } from './status.js'
import { createTokenService } from './token-service.js'
import type { Broker, BrokerDeps } from './types.js'

/** How long close() waits for refreshes in flight (their provider calls are aborted; their leases released). */
const closeWaitMs = 5_000
/** A refresh lease lives this long unless its holder renews it (every third of it, while it works). */
const defaultLeaseTtlMs = 3000

export function createBroker (deps: BrokerDeps): Broker {
  const { store, secrets, providers, log } = deps
  const clock = deps.clock ?? systemClock
  const observer = deps.observer ?? {}
  const options = deps.options ?? {}
  const random = options.random ?? Math.random
  const localRetry = options.backoff ?? defaultLocalRetry

  const table = createCredentialTable({
    credentials: deps.credentials,
    adapterFor: config => providers.adapterFor(config.provider),
    userSessionAdapter: (credential, user) => {
      const sessions = descriptorOf(credential.config.provider).userSessions?.()
      if (sessions === undefined) throw new TypeError(`${credential.config.provider} has no user sessions`)
      return createUserSessionAdapter(credential, user, sessions, tokens)
    },
    now: clock.now
  })
  const lifecycle = createLifecycle(table.size)
  const shared = createSharedStore(store, log)
  const readSecret = createSecretReader(secrets)
  // The lease is short and renewed while its holder works (cluster-refresh.ts): a holder that dies is
  // replaced within one lease period, whatever the provider's latency.
  const leaseTtlMs = (): number => options.leaseTtlMs ?? defaultLeaseTtlMs
  // The longest one refresh may work: two provider calls (Klavi: refresh, then mint on 401) and a secret read.
  const workBoundMs = (state: GrantState): number => 2 * state.credential.timeout_ms + 10_000
  const waitTimeoutMs = (state: GrantState): number => options.waitTimeoutMs ?? state.credential.timeout_ms + 5_000
  const breakers = createBreakerRegistry({
    clock,
    log,
    failureThreshold: options.breakerFailureThreshold,
    cooldownMs: options.breakerCooldownMs,
    random,
    onStateChange: (credential, endpoint, state) => { observer.breakerState?.(credential.provider, state, endpoint) }
  })
  const minter = createMinter({ readSecret, secrets, breakers, lifecycle, clock, log, observer })
  const scheduler = createScheduler({
    clock,
    lifecycle,
    resolve: key => table.grantByKey(key),
    refresh: async (state, intent) => await flights.refresh(state, intent),
    retire: state => { table.retire(state) },
    pacing: options.pacing,
    maxConcurrentRefreshes: options.maxConcurrentRefreshes,
    waitMs: state => waitMs(state),
    backoff: localRetry,
    random
  })
  const adopt: Adopt = (state, grant, fence) => {
    if (state.adopt(grant, fence, clock.now()) && !lifecycle.closing && state.consecutiveFailures === 0) scheduler.scheduleRefresh(state)
  }
  /** How long a grant key must wait before its next attempt: its own pause, or its endpoint's, whichever is longer. */
  const waitMs = (state: GrantState): number => Math.max(state.retryAt - clock.now(), breakers.forCredential(state.credential).blockedMs(), 0)
  const cluster = createClusterRefresh({ shared, minter, scheduler, adopt, lifecycle, clock, log, observer, leaseTtlMs, workBoundMs })
  const failureLog = createFailureLog({ log, now: () => clock.now() })
  const flights = createSingleFlight({
    cluster,
    clock,
    waitTimeoutMs,
    backgroundWaitMs: workBoundMs,
    onSuccess: state => {
      state.clearFailures()
      failureLog.succeeded(state.key)
      if (!lifecycle.closing) scheduler.scheduleRefresh(state)
    },
    onFailure: (state, err, intent) => {
      const permanent = err instanceof ProviderError && err.kind === 'permanent'
      const failure = { consecutive: state.consecutiveFailures + 1, permanentRejections: state.permanentRejections + (permanent ? 1 : 0) }
      state.recordFailure(err, clock.now(), retryDelayAfter(err, failure, localRetry, random))
      const ongoing = ongoingOutage(err, breakers.forCredential(state.credential).state())
      failureLog.failed(state.key, err, ongoing, { credentialId: state.credential.id, reason: intent.reason, attempt: state.consecutiveFailures })
    }
  })
  const tokens = createTokenService({ table, shared, flights, adopt, clock, observer, waitMs, rejectionRefreshIntervalMs: options.rejectionRefreshIntervalMs })
  const signer = createSigner({ table, readSecret, providers, context: minter.context, clock, webhookToleranceSeconds: options.webhookToleranceSeconds ?? 300 })
  const unsubscribe = subscribeToNotices({ table, shared, secrets, flights, adopt, lifecycle, log, observer })
  let started = false
  const holdings: Holdings = {
    secretHeld: () => [...table.entries()].some(entry => secrets.peek(entry.config.secret) !== undefined),
    grantHeld: () => {
      const now = clock.now()
      return table.grants().some(state => state.held !== undefined && state.held.expiresAt > now)
    },
    grantStored: async () => await anyGrantStored(table.defaultGrants().map(state => state.key), shared, clock.now)
  }

  /**
   * Loads what the store already holds for a grant key, so a restarted replica serves at once and does
   * not re-mint; a grant minted with an older secret version (a rotation while no replica ran) is replaced.
   */
  async function load (state: GrantState): Promise<void> {
    const stored = await shared.read(state.key)
    if (stored === undefined || stored.grant.expiresAt <= clock.now()) {
      scheduler.scheduleAt(state, clock.now())
      return
    }
    adopt(state, stored.grant, stored.fence)
    const held = await secrets.get(state.credential.secret).catch(() => undefined)
    if (held !== undefined && stored.grant.secretVersion !== undefined && stored.grant.secretVersion < held.version) {
      lifecycle.track(flights.refresh(state, { reason: 'rotation', secretVersion: held.version }).catch(() => { /* recorded by the single flight */ }))
    }
  }

  return {
    ...tokens,
    ...signer,

    statuses () {
      const now = clock.now()
      return [...table.entries()].map(entry => credentialStatus(entry, scheduler, table.variantCounts(entry.config.id), now))
    },

    async health () {
      return await brokerHealth(deps, lifecycle, started, holdings)
    },

    async start () {
      // Hold every client secret from the start: if Vault is sealed later and the lease falls to this
      // replica, it can still refresh with the secret it holds. A secret that cannot be read now is
      // read again on first use.
      const paths = new Set([...table.entries()].map(entry => entry.config.secret))
      await Promise.all([...paths].map(async path => {
        await secrets.get(path).catch((err: unknown) => { log.warn({ err, path }, 'secret not readable at start; will retry on first use') })
      }))
      await Promise.all(table.defaultGrants().map(load))
      started = true
    },

    drain (graceMs) {
      // Shutdown has begun: no new proactive refreshes; requests still in flight may finish their
      // refresh for a while, after which provider calls are aborted (and their leases released).
      scheduler.close()
      lifecycle.abortAfter(graceMs)
    },

    async close () {
      scheduler.close()
      unsubscribe()
      // In-flight provider calls are aborted; their `finally` releases the leases they hold.
      lifecycle.close()
      for (const state of table.grants()) state.wakeWaiters()
      await lifecycle.settled(table.grants().map(state => state.inflight), closeWaitMs)
    }
  }
}
