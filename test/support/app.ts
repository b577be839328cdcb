import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { stringify as toYaml } from 'yaml'
import { buildApp, type AppOverrides } from '../../src/app.js'
import { loadConfig, type Config } from '../../src/config.js'
import { createLogger } from '../../src/observability/logger.js'
import { deleteKeys, testRedisUrl, uniquePrefix } from './redis.js'

/** A log sink that keeps every line, for assertions on what was (and was not) logged. */
export interface CapturedLogs {
  readonly lines: string[]
  readonly text: () => string
  readonly entries: () => Array<Record<string, unknown>>
}

export function captureLogs (): { stream: Writable, logs: CapturedLogs } {
  const lines: string[] = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      lines.push(...chunk.toString('utf8').split('\n').filter(line => line !== ''))
      callback()
    }
  })
  return {
    stream,
    logs: {
      lines,
      text: () => lines.join('\n'),
      entries: () => lines.map(line => JSON.parse(line) as Record<string, unknown>)
    }
  }
}

/** Writes a temporary file and returns its path. */
export function tempFile (name: string, content: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'cb-test-'))
  const path = join(dir, name)
  writeFileSync(path, content)
  return path
}

export const exampleApiKey = 'test-service-key-0123456789'
export const adminApiKey = 'test-admin-key-0123456789'

export interface TestAppOptions {
  /** The credentials file content (callers default to a service and an admin with the keys above). */
  credentialsFile?: Record<string, unknown>
  /** SECRETS_FILE content (embedded secret source) unless `overrides.secretSource` is given. */
  secrets?: Record<string, Record<string, string>>
  /** Use the real Redis of this run with a fresh prefix (default), or the embedded memory store. */
  store?: 'redis' | 'memory'
  env?: Record<string, string>
  overrides?: AppOverrides
  logLevel?: string
}

export interface TestApp {
  app: FastifyInstance
  config: Config
  logs: CapturedLogs
  prefix: string
  close: () => Promise<void>
}

export const defaultCallers = [
  { id: 'service', api_key_sha256: sha256Hex(exampleApiKey) },
  { id: 'admin', api_key_sha256: sha256Hex(adminApiKey), admin: true }
]

export function sha256Hex (text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

/**
 * Builds the real app (buildApp) against real Redis with a unique key prefix, a credentials file and a
 * secrets file written to a temp dir, and a log capture. Not listening; use inject() or listen on port 0.
 */
export async function buildTestApp (options: TestAppOptions = {}): Promise<TestApp> {
  const prefix = uniquePrefix('app')
  const credentialsFile = tempFile('credentials.yaml', toYaml(options.credentialsFile ?? { callers: defaultCallers, credentials: [] }))
  const secretsFile = tempFile('secrets.json', JSON.stringify(options.secrets ?? {}))
  const redisUrl = testRedisUrl()
  const env: Record<string, string> = {
    LOG_LEVEL: options.logLevel ?? 'info',
    CREDENTIALS_FILE: credentialsFile,
    SECRETS_FILE: secretsFile,
    ...(options.store === 'memory' ? {} : { REDIS_URL: redisUrl, REDIS_KEY_PREFIX: prefix, TOKEN_ENCRYPTION_KEY: randomBytes(32).toString('base64') }),
    ...options.env
  }
  const config = loadConfig(env)
  const { stream, logs } = captureLogs()
  const app = await buildApp(config, { logger: createLogger(config.logLevel, stream), ...options.overrides })
  await app.ready()
  return {
    app,
    config,
    logs,
    prefix,
    close: async () => {
      await app.close()
      if (options.store !== 'memory') await deleteKeys(redisUrl, prefix)
    }
  }
}
