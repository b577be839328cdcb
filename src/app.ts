import { randomUUID } from 'node:crypto'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { validatorCompiler } from 'fastify-type-provider-zod'
import type { JWTVerifyGetKey } from 'jose'
import type { Logger } from 'pino'
import type { Config } from './config.js'
import { createBrokerHttpServer, type BrokerHttpServer } from './http-server.js'
import { clientErrorHandler, frameworkErrorHandler, registerProblemHandlers } from './problem.js'
import { createLogger, logsEveryRequest } from './observability/logger.js'
import { createAuditTrail, streamOf, type AuditTrail } from './observability/audit.js'
import { metricsPlugin } from './observability/plugin.js'
import { lazyRequestLogger } from './observability/request-logger.js'
import type { Metrics } from './observability/metrics.js'
import { secretsPlugin } from './secrets/plugin.js'
import type { SecretSource } from './secrets/types.js'
import { storePlugin } from './store/plugin.js'
import type { GrantStore } from './store/types.js'
import { brokerPlugin } from './broker/plugin.js'
import type { BrokerOptions, BrokerProviders } from './broker/types.js'
import type { Clock } from './time.js'
import { authPlugin } from './auth/plugin.js'
import { rateLimitPlugin } from './auth/rate-limit.js'
import { swaggerOptions } from './routes/docs.js'
import { healthRoutes } from './routes/health.js'
import { v1Routes } from './routes/v1.js'

/** Replaceable parts, for tests and the demo. Everything has a production default built from `config`. */
export interface AppOverrides {
  logger?: Logger
  clock?: Clock
  store?: GrantStore
  secretSource?: SecretSource
  secretCheckIntervalMs?: number
  providers?: BrokerProviders
  metrics?: Metrics
  jwks?: JWTVerifyGetKey
  brokerOptions?: BrokerOptions
  /** false: do not start the broker on ready (OpenAPI generation). */
  startBroker?: boolean
}

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
    /** The same pino logger as `log`, typed as pino's Logger for the services that take one. */
    logger: Logger
    /** The audit trail (observability/audit.ts): one line per token, signature, proxied request, admin action, denial… */
    audit: AuditTrail
    /** The HTTP server's connection policy; `drain` is the first step of shutdown (src/main.ts). */
    connections: BrokerHttpServer
  }
}

/** Largest request body any route accepts; webhook bodies are the biggest and stay well under it. */
const bodyLimitBytes = 1_048_576 * 2

const configPlugin = fp<{ config: Config, logger: Logger }>(async (app, { config, logger }) => {
  app.decorate('config', config)
  app.decorate('logger', logger)
  app.decorate('audit', createAuditTrail(streamOf(logger)))
}, { name: 'config', fastify: '5.x' })

/**
 * Builds the broker's HTTP app without listening. The registration order below is the design: config,
 * metrics, secrets (Vault login), store (may need a key from Vault), broker (needs both), auth, rate limit, routes.
 */
export async function buildApp (config: Config, overrides: AppOverrides = {}): Promise<FastifyInstance> {
  const logger = overrides.logger ?? createLogger(config.logLevel, undefined, config.logFormat)
  const connections = createBrokerHttpServer({ maxConnections: config.maxConnections, log: logger })
  const app = Fastify({
    // pino's Logger is a FastifyBaseLogger at run time; only the declared types differ (msgPrefix).
    loggerInstance: logger as unknown as FastifyBaseLogger,
    // No "incoming request" / "request completed" pair per request at info and above: at hundreds of
    // requests a second they cost a third of the throughput. Every token handed out still writes its
    // audit line, and errors are logged by the problem handler. LOG_LEVEL=debug brings them back.
    logController: new LogController({ disableRequestLogging: !logsEveryRequest(config.logLevel) }),
    // The per-request child logger is made on first use: most token requests never log through it, and
    // making one (pino redacts its bindings) costs a twentieth of a cache hit.
    childLoggerFactory: lazyRequestLogger,
    bodyLimit: bodyLimitBytes,
    // Our own request id on every request: a caller's x-request-id is whatever the caller sent, so it is
    // kept beside ours in the audit line (caller_request_id), never used as ours.
    requestIdHeader: false,
    genReqId: () => randomUUID(),
    // Timeouts, the connection cap and the shutdown drain live in the server (src/http-server.ts).
    serverFactory: connections.serverFactory,
    // A request that reaches a closing app came on a connection opened before shutdown: it is served (the
    // broker stops only after the server has closed) with Connection: close, not refused with Fastify's
    // own 503 body, which is not problem+json.
    return503OnClosing: false,
    // Keep-alive sockets would hold a rolling restart for their whole idle timeout; close them on shutdown.
    forceCloseConnections: 'idle',
    // Routing errors (bad percent-encoding, over-long parameters) and what Node's parser rejects before
    // there is a request (malformed request line, bad Content-Length, headers too large, too slow) are
    // answered as problem+json too.
    frameworkErrors: frameworkErrorHandler,
    clientErrorHandler
  })
  app.decorate('connections', connections)
  app.setValidatorCompiler(validatorCompiler)
  // Responses are built to their schemas by the handlers (and tests check the shapes); re-validating
  // each one with zod on the way out would cost more than the rest of a cache hit.
  app.setSerializerCompiler(() => data => JSON.stringify(data))
  registerProblemHandlers(app)
  // Once shutdown has begun, every answer closes its connection: a keep-alive socket that goes idle after
  // close() started would otherwise hold the process open until the grace period ends.
  app.addHook('preClose', async () => { connections.closeConnectionsAfterAnswer() })
  // A callback hook, not an async one: a cache hit is answered without a promise (issue 12).
  app.addHook('onSend', (request, reply, payload, done) => {
    void reply.header('x-request-id', request.id)
    done(null, payload)
  })

  // The document's frame, operation ids, headers and examples: src/routes/docs.ts.
  await app.register(swagger, swaggerOptions)

  await app.register(configPlugin, { config, logger })
  await app.register(metricsPlugin, { metrics: overrides.metrics })
  await app.register(secretsPlugin, { source: overrides.secretSource, checkIntervalMs: overrides.secretCheckIntervalMs })
  await app.register(storePlugin, { store: overrides.store, now: overrides.clock?.now })
  await app.register(brokerPlugin, { clock: overrides.clock, providers: overrides.providers, brokerOptions: overrides.brokerOptions, autoStart: overrides.startBroker })
  await app.register(authPlugin, { jwks: overrides.jwks })
  // Per-caller limit: routes/v1.ts adds it as a hook after authentication; operations routes never have it.
  await app.register(rateLimitPlugin)

  await app.register(healthRoutes)
  await app.register(v1Routes, { prefix: '/v1' })
  await app.register(swaggerUi, { routePrefix: '/docs' })

  if (config.usingExampleCredentials) {
    app.log.warn({ file: config.credentialsFile }, 'no CREDENTIALS_FILE: using the example credentials; not for production')
  }
  return app
}
