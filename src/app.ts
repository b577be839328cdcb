import { randomUUID } from 'node:crypto'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { jsonSchemaTransform, jsonSchemaTransformObject, validatorCompiler } from 'fastify-type-provider-zod'
import type { JWTVerifyGetKey } from 'jose'
import type { Logger } from 'pino'
import type { Config } from './config.js'
import { frameworkErrorHandler, registerProblemHandlers } from './problem.js'
import { createLogger } from './observability/logger.js'
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
    /** The audit trail (observability/audit.ts): one line per token, signature, admin action, denial… */
    audit: AuditTrail
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
  const app = Fastify({
    // pino's Logger is a FastifyBaseLogger at run time; only the declared types differ (msgPrefix).
    loggerInstance: logger as unknown as FastifyBaseLogger,
    // No "incoming request" / "request completed" pair per request at info and above: at hundreds of
    // requests a second they cost a third of the throughput. Every token handed out still writes its
    // audit line, and errors are logged by the problem handler. LOG_LEVEL=debug brings them back.
    logController: new LogController({ disableRequestLogging: !['debug', 'trace'].includes(config.logLevel) }),
    // The per-request child logger is made on first use: most token requests never log through it, and
    // making one (pino redacts its bindings) costs a twentieth of a cache hit.
    childLoggerFactory: lazyRequestLogger,
    bodyLimit: bodyLimitBytes,
    // Our own request id on every request: a caller's x-request-id is whatever the caller sent, so it is
    // kept beside ours in the audit line (caller_request_id), never used as ours.
    requestIdHeader: false,
    genReqId: () => randomUUID(),
    return503OnClosing: true,
    // Keep-alive sockets would hold a rolling restart for their whole idle timeout; close them on shutdown.
    forceCloseConnections: 'idle',
    connectionTimeout: 30_000,
    requestTimeout: 60_000,
    // Routing errors (bad percent-encoding, over-long parameters) answered as problem+json too.
    frameworkErrors: frameworkErrorHandler
  })
  app.setValidatorCompiler(validatorCompiler)
  // Responses are built to their schemas by the handlers (and tests check the shapes); re-validating
  // each one with zod on the way out would cost more than the rest of a cache hit.
  app.setSerializerCompiler(() => data => JSON.stringify(data))
  registerProblemHandlers(app)
  // Once shutdown has begun, every answer closes its connection: a keep-alive socket that goes idle after
  // close() started would otherwise hold the process open until the grace period ends.
  let shuttingDown = false
  app.addHook('preClose', async () => { shuttingDown = true })
  // A callback hook, not an async one: a cache hit is answered without a promise (issue 12).
  app.addHook('onSend', (request, reply, payload, done) => {
    void reply.header('x-request-id', request.id)
    if (shuttingDown) void reply.header('connection', 'close')
    done(null, payload)
  })

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'credential-broker',
        version: '1',
        description: 'Short-lived provider tokens, request signatures and webhook verification for internal services. Errors are application/problem+json (RFC 9457) with a stable `code`.'
      },
      tags: [
        { name: 'tokens', description: 'Provider tokens' },
        { name: 'signing', description: 'Request signatures (SIR Giving)' },
        { name: 'webhooks', description: 'Webhook signature verification' },
        { name: 'admin', description: 'Operator view (admin callers only)' },
        { name: 'operations', description: 'Health, readiness, metrics' }
      ],
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'An API key issued to the caller, or a JWT (e.g. a Kubernetes service account token) whose issuer and audience the broker trusts' }
        }
      }
    },
    transform: jsonSchemaTransform,
    transformObject: jsonSchemaTransformObject
  })

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
