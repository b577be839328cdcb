import { randomBytes } from 'node:crypto'
import { pino, type Logger } from 'pino'
import { createBroker } from '../../src/broker/broker.js'
import type { BrokerObserver, BrokerOptions, RefreshReason, RefreshResult } from '../../src/broker/types.js'
import type { Clock } from '../../src/time.js'
import type { Broker } from '../../src/broker/types.js'
import { CredentialSchema, type CredentialConfig } from '../../src/config.js'
import { createProviderRegistry } from '../../src/providers/catalog.js'
import { createFileSecretSource } from '../../src/secrets/file-source.js'
import { createSecretManager, type SecretManager } from '../../src/secrets/secret-manager.js'
import { createGrantCipher } from '../../src/store/encryption.js'
import { createRedisGrantStore, type RedisGrantStore } from '../../src/store/redis-store.js'
import { tempFile } from './app.js'
import { deleteKeys, testRedisUrl, uniquePrefix } from './redis.js'

export interface RefreshEvent { replica: number, credentialId: string, result: RefreshResult, reason: RefreshReason }

export interface Replica {
  index: number
  broker: Broker
  store: RedisGrantStore
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
 * N broker replicas as the design runs them: separate local caches and stores, one real Redis (a fresh
 * key prefix), one shared encryption key, real provider adapters, file secrets. Nothing is mocked.
 */
export async function createBrokerWorld (options: BrokerWorldOptions): Promise<BrokerWorld> {
  const prefix = uniquePrefix('broker')
  const redisUrl = options.redisUrl ?? testRedisUrl()
  const key = randomBytes(32).toString('base64')
  const secretsFile = tempFile('secrets.json', JSON.stringify(options.secrets))
  const log = options.log ?? pino({ level: 'silent' })
  const credentials = options.credentials.map(credential => CredentialSchema.parse({ environment: 'sandbox', ...credential }))
  const refreshes: RefreshEvent[] = []
  let contention = 0
  const replicas: Replica[] = []
  for (let index = 0; index < (options.replicas ?? 1); index++) {
    const store = createRedisGrantStore({ url: redisUrl, keyPrefix: prefix, cipher: createGrantCipher(key, { log }), log, now: options.clock?.now })
    await store.ready()
    const secrets = createSecretManager({ source: createFileSecretSource({ file: secretsFile, log }), log, intervalMs: options.secretCheckIntervalMs ?? 3_600_000 })
    await secrets.start()
    const observer: BrokerObserver = {
      refreshed: (_provider, credentialId, result, reason) => { refreshes.push({ replica: index, credentialId, result, reason }) },
      leaseContention: () => { contention += 1 }
    }
    const broker = createBroker({ credentials, store, secrets, secretsKind: 'file', providers: createProviderRegistry(), log, clock: options.clock, observer, options: options.options })
    replicas.push({ index, broker, store, secrets })
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
      for (const replica of replicas) {
        await replica.broker.close()
        await replica.store.close()
        await replica.secrets.close()
      }
      await deleteKeys(redisUrl, prefix).catch(() => {})
    }
  }
}
