import { randomBytes } from 'node:crypto'
import { stringify as toYaml } from 'yaml'
import { sha256Hex, tempFile } from './app.js'
import { startBroker, type BrokerProcess } from './process.js'
import { deleteKeys, uniquePrefix } from './redis.js'
import type { TestTopology } from './redis-topology.js'

export const clusterApiKey = 'cluster-caller-key-0123456789'

export interface BrokerCluster {
  processes: BrokerProcess[]
  prefix: string
  env: Record<string, string>
  close: () => Promise<void>
}

/**
 * R broker processes, each exactly what `npm start` runs, sharing one Redis (fresh prefix), one
 * encryption key and one credentials file. The caller `service` authenticates with clusterApiKey.
 */
export async function startBrokerCluster (options: {
  replicas: number
  /** One Redis node; or `topology`, a Sentinel group or Cluster (its environment replaces REDIS_URL). */
  redisUrl?: string
  topology?: TestTopology
  credentials: Array<Record<string, unknown>>
  secrets: Record<string, Record<string, string>>
  env?: Record<string, string>
  /** Extra environment for one process (by index), on top of the shared one: e.g. LD_PRELOAD/FAKETIME for clock skew. */
  processEnv?: (index: number) => Record<string, string>
}): Promise<BrokerCluster> {
  const prefix = uniquePrefix('cluster')
  const env: Record<string, string> = {
    LOG_LEVEL: 'warn',
    // Load tests measure the broker, not its per-caller limit.
    RATE_LIMIT_PER_MINUTE: '100000000',
    ...(options.topology?.env ?? { REDIS_URL: options.redisUrl ?? '' }),
    REDIS_KEY_PREFIX: prefix,
    TOKEN_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    CREDENTIALS_FILE: tempFile('credentials.yaml', toYaml({
      callers: [{ id: 'service', api_key_sha256: sha256Hex(clusterApiKey) }, { id: 'ops', api_key_sha256: sha256Hex(`${clusterApiKey}-admin`), admin: true }],
      credentials: options.credentials.map(credential => ({ allowed_callers: ['service'], ...credential }))
    })),
    SECRETS_FILE: tempFile('secrets.json', JSON.stringify(options.secrets)),
    ...options.env
  }
  const processes = await Promise.all(Array.from({ length: options.replicas }, async (_, index) => await startBroker({ ...env, ...options.processEnv?.(index) })))
  return {
    processes,
    prefix,
    env,
    close: async () => {
      await Promise.all(processes.map(async process => await process.stop('SIGKILL')))
      if (options.topology !== undefined) await options.topology.deleteKeys(prefix).catch(() => {})
      else if (options.redisUrl !== undefined) await deleteKeys(options.redisUrl, prefix).catch(() => {})
    }
  }
}

export interface TokenAnswer { status: number, token?: string, expiresIn?: number, receivedAt: number, code?: string }

/** One GET /v1/credentials/{id}/token against a process. */
export async function fetchToken (process: BrokerProcess, credentialId: string, minTtl: number): Promise<TokenAnswer> {
  const response = await fetch(`${process.url}/v1/credentials/${credentialId}/token?min_ttl=${minTtl}`, { headers: { authorization: `Bearer ${clusterApiKey}` } })
  const receivedAt = Date.now()
  const body = await response.json() as { access_token?: string, expires_in?: number, code?: string }
  return { status: response.status, token: body.access_token, expiresIn: body.expires_in, code: body.code, receivedAt }
}

/**
 * `concurrency` callers, spread over the processes, each asking for tokens back to back until
 * `durationMs` has passed. Every answer is returned for inspection.
 */
export async function loadTokens (processes: BrokerProcess[], credentialId: string, options: { concurrency: number, durationMs: number, minTtl: number }): Promise<TokenAnswer[]> {
  const answers: TokenAnswer[] = []
  const deadline = Date.now() + options.durationMs
  await Promise.all(Array.from({ length: options.concurrency }, async (_, caller) => {
    const process = processes[caller % processes.length] as BrokerProcess
    while (Date.now() < deadline) answers.push(await fetchToken(process, credentialId, options.minTtl))
  }))
  return answers
}
