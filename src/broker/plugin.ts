import fp from 'fastify-plugin'
import type { BrokerProviders, BrokerOptions } from './types.js'
import { createBrokerFor } from '../assemble.js'
import type { Clock } from '../time.js'
import type { Broker } from './types.js'
import { descriptorOf } from '../providers/catalog.js'
import { circuitBreakerStates } from '../observability/metrics.js'

declare module 'fastify' {
  interface FastifyInstance {
    broker: Broker
  }
}

export interface BrokerPluginOptions {
  clock?: Clock | undefined
  providers?: BrokerProviders | undefined
  brokerOptions?: BrokerOptions | undefined
  /** Start the broker (load grants, schedule refreshes) when the app is ready. Off only for OpenAPI generation. */
  autoStart?: boolean | undefined
}

/**
 * Decorates `broker`, wires its observer to the metrics, starts it when the app is ready (loading held
 * grants and scheduling refreshes) and closes it before the store and secrets it uses.
 */
export const brokerPlugin = fp<BrokerPluginOptions>(async (app, options) => {
  const { metrics } = app
  const tokenResult = { local: 'hit_local', store: 'hit_store', refreshed: 'refreshed', stale: 'stale', error: 'error' } as const
  const broker = createBrokerFor(app.config, app.store, { manager: app.secrets, kind: app.secretSourceKind }, {
    providers: options.providers,
    log: app.logger.child({ component: 'broker' }),
    clock: options.clock,
    options: options.brokerOptions,
    observer: {
      tokenServed: (credential, source, seconds) => { metrics.tokenServed(credential, tokenResult[source], seconds) },
      refreshed: (provider, credential, result, reason, seconds) => {
        metrics.refreshes.inc({ provider, credential, result, reason })
        metrics.refreshDuration.observe({ provider }, seconds)
      },
      leaseContention: credential => { metrics.leaseContention.inc({ credential }) },
      // Breakers are per endpoint ("kivra:production", or "kivra:sandbox:<base_url>" for a host override).
      breakerState: (provider, state, endpoint) => { metrics.circuitBreakerState.set({ provider, endpoint: endpoint.replace(/:$/, '') }, circuitBreakerStates[state]) },
      rotated: credential => { metrics.secretRotations.inc({ credential }) },
      rolledBack: credential => { metrics.secretRollbacks.inc({ credential }) }
    }
  })
  for (const credential of app.config.credentials) {
    metrics.initCredential({ id: credential.id, provider: credential.provider, mintsTokens: descriptorOf(credential.provider).mechanism === 'token' })
  }
  const clockNow = options.clock?.now ?? Date.now
  // Expiry, lifetime and the planned refresh moment of each held grant, for lifetime-relative alerts.
  metrics.setGrantExpirySource(() => {
    const now = clockNow()
    return broker.statuses().flatMap(status => {
      if (status.expiresAt === undefined) return []
      const grant = status.obtainedAt === undefined ? undefined : { obtainedAt: status.obtainedAt, expiresAt: status.expiresAt }
      return [{
        credentialId: status.id,
        expiresInSeconds: (status.expiresAt - now) / 1000,
        lifetimeSeconds: grant === undefined ? undefined : (grant.expiresAt - grant.obtainedAt) / 1000,
        refreshDueInSeconds: status.refreshDueAt === undefined ? undefined : (status.refreshDueAt - now) / 1000,
        secretRolledBack: status.secretRolledBack
      }]
    })
  })
  // Readiness, store and secret-source gauges are read at scrape time, so they are current even when nothing polls /readyz.
  metrics.setHealthSource(async () => {
    const health = await broker.health()
    return {
      readiness: health.state,
      store: { kind: health.store.kind, up: health.store.state === 'up' },
      secrets: {
        kind: health.secrets.kind,
        authenticated: health.secrets.kind === 'vault' ? health.secrets.authenticated === true : health.secrets.state === 'ok'
      }
    }
  })
  app.decorate('broker', broker)
  if (options.autoStart !== false) app.addHook('onReady', async () => { await broker.start() })
  // preClose runs before in-flight requests drain, onClose after. 7 s keeps a refresh that a request
  // waits on within close-with-grace's 10 s (src/main.ts).
  app.addHook('preClose', async () => { broker.drain(7_000) })
  app.addHook('onClose', async () => { await broker.close() })
}, { name: 'broker', fastify: '5.x', dependencies: ['config', 'metrics', 'store', 'secrets'] })
