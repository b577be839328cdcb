import { pino, type Logger, type LoggerOptions, type DestinationStream } from 'pino'
import { createRequire } from 'node:module'
import { createLineBatch, type LineBatch } from './line-batch.js'
import { BrokerError, ConfigError, CredentialBrokerError, ProviderError, SecretError, StoreError } from '../errors.js'

/**
 * The one redaction list. Paths cover request headers, provider grants and secrets wherever they may be
 * attached to a log object, and the fields of HTTP client errors (axios from node-vault, undici) that
 * carry request headers such as X-Vault-Token. The error serializer below is the second line of defence:
 * it copies only known-safe fields of an error, so an unknown error shape cannot leak by default.
 */
export const redactPaths = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-vault-token"]',
  'req.headers["x-api-key"]',
  'headers.authorization',
  'headers["x-vault-token"]',
  '*.authorization',
  '*.Authorization',
  '*["x-vault-token"]',
  '*["X-Vault-Token"]',
  'accessToken', '*.accessToken',
  'access_token', '*.access_token',
  'refreshToken', '*.refreshToken',
  'refresh_token', '*.refresh_token',
  'token', '*.token',
  'client_secret', '*.client_secret',
  'secretKey', '*.secretKey',
  'secret_id', '*.secret_id',
  'api_key', '*.api_key',
  'hmacSecret', '*.hmacSecret',
  'webhookSecret', '*.webhookSecret',
  'password', '*.password',
  'secret', '*.secret',
  'data', '*.data',
  'config', '*.config',
  'request', '*.request',
  'response', '*.response'
]

const safeErrorFields = ['code', 'kind', 'reason', 'status', 'statusCode', 'providerCode', 'correlationId', 'retryAfterMs', 'retryAfterSeconds'] as const

/**
 * A failure the broker expects and handles (a provider's 5xx, timeout or reset; Redis or Vault
 * unreachable; a provider API the proxy cannot reach or that does not answer in time), or a caller's
 * answer made of one: its message, kind and code say everything, and a stack
 * trace per retry would only bury the log. Stacks of these appear at LOG_LEVEL=debug.
 */
function isExpectedTransient (err: unknown): boolean {
  if (err instanceof ProviderError) return err.kind === 'transient'
  if (err instanceof SecretError || err instanceof StoreError) return err.kind === 'unavailable'
  if (err instanceof BrokerError) {
    // The proxy's upstream failures carry the transport error (undici's) as cause: expected by their code.
    if (err.code === 'CB_UPSTREAM_UNAVAILABLE' || err.code === 'CB_UPSTREAM_TIMEOUT') return true
    return err.statusCode === 503 && err.cause !== undefined && isExpectedTransient(err.cause)
  }
  return false
}

/**
 * Serializes an error by copying only fields known to be safe. Messages of our own errors never carry
 * secrets; foreign errors (axios, undici, ioredis) keep their class and code but lose everything else
 * that could embed a request (headers, config, bodies). `transientStacks: false` leaves out the stack of
 * expected transient failures (isExpectedTransient), as the logger does below debug.
 */
export function serializeError (err: unknown, depth = 0, options: { transientStacks: boolean } = { transientStacks: true }): Record<string, unknown> {
  if (!(err instanceof Error)) return { type: typeof err }
  const ours = err instanceof CredentialBrokerError
  const out: Record<string, unknown> = {
    type: err.name,
    message: ours ? err.message : sanitizeForeignMessage(err.message)
  }
  const record = err as unknown as Record<string, unknown>
  for (const field of safeErrorFields) {
    const value = record[field]
    if (typeof value === 'string' || typeof value === 'number') out[field] = value
  }
  if (err.stack !== undefined && ours && (options.transientStacks || !isExpectedTransient(err))) out.stack = err.stack.split('\n').slice(0, 6).join('\n')
  if (err.cause !== undefined && depth < 3) out.cause = serializeError(err.cause, depth + 1, options)
  return out
}

/** Foreign error messages can quote a URL with credentials or a header; keep them short and scrubbed. */
function sanitizeForeignMessage (message: string): string {
  return message
    .replace(/\/\/[^/@\s]+@/g, '//***@')
    .replace(/(bearer|basic)\s+[A-Za-z0-9._~+/=-]+/gi, '$1 ***')
    .replace(/(hvs|hvb|s)\.[A-Za-z0-9]{10,}/g, '***')
    .slice(0, 300)
}

export function loggerOptions (level: string): LoggerOptions {
  const transientStacks = level === 'debug' || level === 'trace'
  const errorSerializer = (err: unknown): Record<string, unknown> => serializeError(err, 0, { transientStacks })
  return {
    level,
    // ISO 8601 times ("2026-12-02T01:40:00.000Z"): what log stores parse without a mapping.
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: redactPaths, censor: '[redacted]' },
    serializers: {
      err: errorSerializer,
      error: errorSerializer,
      req: (req: { method?: string, url?: string, id?: string }) => ({ method: req.method, url: req.url, id: req.id }),
      res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode })
    }
  }
}

/** Whether Fastify logs every request ("incoming request", "request completed") at this level. */
export const logsEveryRequest = (level: string): boolean => level === 'debug' || level === 'trace'

/** The longest a written line waits in memory before it is handed to stdout. */
export const logFlushIntervalMs = 100
/**
 * Lines are handed to stdout in batches of at least this many characters (or at the flush interval):
 * about 150 audit lines per write (a write costs about 15 µs of CPU with its thread-pool hop). The main log and the audit trail share this one writer, so their lines
 * never interleave and keep their order.
 */
const batchChars = 65_536

/**
 * stdout as the main log and the audit trail write it: asynchronously, in batches (line-batch.ts),
 * flushed at least every 100 ms, on `flush()` (shutdown) and when the process exits. A write per line cost
 * about a tenth of a token cache hit (one fs.write on the libuv pool each). What a crash that kills the
 * process outright (SIGKILL, OOM) loses is at most the last 100 ms of lines (README).
 */
export function batchedStdout (): LineBatch {
  // The batch's timer is unref'd: it never holds the process open.
  return createLineBatch(pino.destination({ dest: 1, sync: false, minLength: 0 }), { batchChars, flushIntervalMs: logFlushIntervalMs })
}

/**
 * stdout through pino-pretty (LOG_FORMAT=pretty), in pino's worker thread. pino-pretty is a dev dependency:
 * an image built without dev dependencies says so at start instead of failing on the first line.
 */
function prettyStdout (): DestinationStream {
  try {
    createRequire(import.meta.url).resolve('pino-pretty')
  } catch {
    throw new ConfigError(['LOG_FORMAT: "pretty" needs pino-pretty, a development dependency (npm install); use "json" in production'])
  }
  return pino.transport({ target: 'pino-pretty', options: { destination: 1, translateTime: 'SYS:standard' } }) as DestinationStream
}

/** The broker's logger; without a destination it writes to stdout in batches (batchedStdout), or pretty. */
export function createLogger (level: string, destination?: DestinationStream, format: 'json' | 'pretty' = 'json'): Logger {
  return pino(loggerOptions(level), destination ?? (format === 'pretty' ? prettyStdout() : batchedStdout()))
}
