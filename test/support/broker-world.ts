import { randomBytes } from 'node:crypto'
import { pino, type Logger } from 'pino'
import { stringify as toYaml } from 'yaml'
import { assembleEngine } from '../../src/assemble.js'
import type { Broker, BrokerObserver, BrokerOptions, RefreshReason, RefreshResult } from '../../src/broker/types.js'
import { loadConfig, type CredentialConfig } from '../../src/config.js'
import type { SecretManager } from '../../src/secrets/secret-manager.js'
import type { GrantStore } from '../../src/store/types.js'
import type { Clock } from '../../src/time.js'
import { tempFile } from './app.js'
import { deleteKeys, testRedisUrl, uniquePrefix } from './redis.js'

export interface RefreshEvent { replica: number, credentialId: string, result: RefreshResult, reason: RefreshReason }

export interface Replica {
  index: number
  broker: Broker
  store: GrantStore
  secrets: SecretManager
}

export interface BrokerWorld {
  replicas: Replica[]
  /** Every refresh outcome reported by any replica, in order. */
  refreshes: RefreshEvent[]
  contention: () => number
  prefix: string
  redisUrl: string
  secretsFile: string
  close: () => Promise<void>
}

export interface BrokerWorldOptions {
  credentials: Array<Partial<CredentialConfig> & Pick<CredentialConfig, 'id' | 'provider' | 'secret'>>
  secrets: Record<string, Record<string, string>>
  replicas?: number
  clock?: Clock
  redisUrl?: string
  options?: BrokerOptions
  log?: Logger
  /** Start the replicas (load grants, schedule refreshes); default true. */
  start?: boolean
  /**
   * Replicas (by index) whose lease renewals never reach Redis (they believe they renewed): to Redis they
   * look like a process that stalled past its lease, the case fencing exists for.
   */
  stalledRenewals?: number[]
  /** Read secrets from this Vault (token auth) instead of the secrets file; `secrets` are then ignored. */
  vault?: { addr: string, token: string }
  /** How often the secret managers look for new versions; default one hour (never, in a test). */
  secretCheckIntervalMs?: number
}

/** The `credentials` and `secrets` of a world with one credential served by a provider stand-in. */
export function standInCredential (
  standIn: { url: string, secret: Readonly<Record<string, string>> },
  credential: BrokerWorldOptions['credentials'][number] extends infer C ? Omit<C, 'secret'> : never
): Pick<BrokerWorldOptions, 'credentials' | 'secrets'> {
  const secret = `secret/${credential.id}`
  return { credentials: [{ secret, base_url: standIn.url, ...credential }], secrets: { [secret]: { ...standIn.secret } } }
}

/**
 * N broker replicas as the design runs them, each assembled from a configuration exactly as a production
 * replica is (src/assemble.ts): separate local caches and stores, one real Redis (a fresh key prefix), one
 * shared encryption key, real provider adapters, file secrets. Nothing is mocked.
 */
export async function createBrokerWorld (options: BrokerWorldOptions): Promise<BrokerWorld> {
  const prefix = uniquePrefix('broker')
  const redisUrl = options.redisUrl ?? testRedisUrl()
  const secretsFile = tempFile('secrets.json', JSON.stringify(options.secrets))
  const credentialsFile = tempFile('credentials.yaml', toYaml({ credentials: options.credentials.map(credential => ({ environment: 'sandbox', ...credential })) }))
  const config = loadConfig({
    CREDENTIALS_FILE: credentialsFile,
    ...(options.vault === undefined ? { SECRETS_FILE: secretsFile } : { VAULT_ADDR: options.vault.addr, VAULT_TOKEN: options.vault.token }),
    REDIS_URL: redisUrl,
    REDIS_KEY_PREFIX: prefix,
    TOKEN_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    LOG_LEVEL: 'silent'
  })
  const log = options.log ?? pino({ level: 'silent' })
  const refreshes: RefreshEvent[] = []
  let contention = 0
  const replicas: Replica[] = []
  const closers: Array<() => Promise<void>> = []
  for (let index = 0; index < (options.replicas ?? 1); index++) {
    const observer: BrokerObserver = {
      refreshed: (_provider, credentialId, result, reason) => { refreshes.push({ replica: index, credentialId, result, reason }) },
      leaseContention: () => { contention += 1 }
    }
    const stalled = options.stalledRenewals?.includes(index) === true
    const engine = await assembleEngine(config, {
      log,
      clock: options.clock,
      observer,
      options: options.options,
      secretCheckIntervalMs: options.secretCheckIntervalMs ?? 3_600_000,
      wrapStore: stalled ? store => Object.assign(Object.create(store) as GrantStore, { renewLease: async () => true }) : undefined
    })
    replicas.push({ index, broker: engine.broker, store: engine.store, secrets: engine.secrets })
    closers.push(engine.close)
  }
  if (options.start !== false) await Promise.all(replicas.map(async replica => { await replica.broker.start() }))
  return {
    replicas,
    refreshes,
    contention: () => contention,
    prefix,
    redisUrl,
    secretsFile,
    close: async () => {
      for (const close of closers) await close()
      await deleteKeys(redisUrl, prefix).catch(() => {})
    }
  }
}
