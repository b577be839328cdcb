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
      tokenServed: (credential, source, seconds) => {
        metrics.tokenRequests.inc({ credential, result: tokenResult[source] })
        if (source === 'stale') metrics.staleGrantsServed.inc({ credential })
        metrics.tokenRequestDuration.observe({ credential }, seconds)
      },
      refreshed: (provider, credential, result, reason, seconds) => {
        metrics.refreshes.inc({ provider, credential, result, reason })
        metrics.refreshDuration.observe({ provider }, seconds)
      },
      leaseContention: credential => { metrics.leaseContention.inc({ credential }) },
      breakerState: (provider, state) => { metrics.circuitBreakerState.set({ provider }, circuitBreakerStates[state]) },
      rotated: credential => { metrics.secretRotations.inc({ credential }) }
    }
  })
  for (const credential of app.config.credentials) {
    metrics.initCredential({ id: credential.id, provider: credential.provider, mintsTokens: descriptorOf(credential.provider).mechanism === 'token' })
  }
  const clockNow = options.clock?.now ?? Date.now
  metrics.setGrantExpirySource(() => broker.statuses().flatMap(status =>
    status.expiresAt === undefined ? [] : [{ credentialId: status.id, expiresInSeconds: (status.expiresAt - clockNow()) / 1000 }]))
  // Readiness, Redis and Vault gauges are read at scrape time, so they are current even when nothing polls /readyz.
  metrics.setHealthSource(async () => {
    const health = await broker.health()
    return {
      readiness: health.state,
      redisUp: health.store.kind === 'redis' ? health.store.state === 'up' : undefined,
      vaultAuthenticated: health.secrets.kind === 'vault' ? health.secrets.authenticated : undefined
    }
  })
  app.decorate('broker', broker)
  if (options.autoStart !== false) app.addHook('onReady', async () => { await broker.start() })
  // preClose runs before in-flight requests drain, onClose after. 7 s keeps a refresh that a request
  // waits on within close-with-grace's 10 s (src/main.ts).
  app.addHook('preClose', async () => { broker.drain(7_000) })
  app.addHook('onClose', async () => { await broker.close() })
}, { name: 'broker', fastify: '5.x', dependencies: ['config', 'metrics', 'store', 'secrets'] })
