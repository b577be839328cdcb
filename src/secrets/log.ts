import type { Logger } from 'pino'

/**
 * The logging the secret layer needs. A structural subset of pino's Logger, so a Fastify instance's
 * `app.log` (typed FastifyBaseLogger) fits as well as a plain pino logger.
 */
export type SecretsLog = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>
