import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { stringify as toYaml } from 'yaml'
import { buildApp, type AppOverrides } from '../../src/app.js'
import { loadConfig, type Config } from '../../src/config.js'
import { captureLogs, type CapturedLogs } from './logs.js'
import { deleteKeys, testRedisUrl, uniquePrefix } from './redis.js'

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

/** API-key callers for a credentials file, one per entry of `keys` (caller id → the key it presents). */
export function apiKeyCallers (keys: Readonly<Record<string, string>>): Array<{ id: string, api_key_sha256: string }> {
  return Object.entries(keys).map(([id, key]) => ({ id, api_key_sha256: sha256Hex(key) }))
}

/** Closes every stand-in (or anything with close()) at once. */
export async function closeAll (closables: ReadonlyArray<{ close: () => Promise<void> }>): Promise<void> {
  await Promise.all(closables.map(async closable => { await closable.close() }))
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
  const logs = captureLogs(config.logLevel)
  const app = await buildApp(config, { logger: logs.log, ...options.overrides })
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
