/**
 * The one way the engine is assembled from configuration: the secret manager, then the grant store (whose
 * key may live in Vault), then the broker over both. The app's infrastructure plugins (secrets, store,
 * broker) each call one step; tests and benchmarks that run the engine without HTTP call `assembleEngine`,
 * so every replica in a test is built exactly as a production replica is.
 */
import type { Logger } from 'pino'
import type { Config } from './config.js'
import { ConfigError } from './errors.js'
import { createBroker } from './broker/broker.js'
import type { Broker, BrokerObserver, BrokerOptions, BrokerProviders } from './broker/types.js'
import { createProviderRegistry } from './providers/catalog.js'
import { createSecretSource } from './secrets/index.js'
import { createSecretManager, type SecretManager } from './secrets/secret-manager.js'
import type { SecretSource } from './secrets/types.js'
import { parseEncryptionKeySetting } from './store/encryption.js'
import { createGrantStore } from './store/index.js'
import type { GrantStore } from './store/types.js'
import type { Clock } from './time.js'

/** How long start-up waits for Redis: a normal start begins ready, a Redis that is down does not stop it. */
const storeReadyWaitMs = 5000

export interface Secrets {
  manager: SecretManager
  kind: SecretSource['kind']
}

/** The secret manager the configuration asks for (Vault, or the secrets file), started: Vault login happens here. */
export async function createSecretsFor (config: Config, log: Logger, options: { source?: SecretSource | undefined, checkIntervalMs?: number | undefined } = {}): Promise<Secrets> {
  const source = options.source ?? createSecretSource(config, log)
  const manager = createSecretManager({ source, log, intervalMs: options.checkIntervalMs ?? config.secretCheckIntervalSeconds * 1000 })
  await manager.start()
  return { manager, kind: source.kind }
}

/**
 * The grant store the configuration asks for: Redis or the embedded memory store. A TOKEN_ENCRYPTION_KEY
 * of the form "vault:<mount>/<path>#<field>" is read through `secrets` first, so every replica gets the
 * same key without it ever sitting in an environment variable. Waits (bounded) for Redis.
 */
export async function createStoreFor (config: Config, secrets: SecretManager, log: Logger, options: { now?: (() => number) | undefined } = {}): Promise<GrantStore> {
  let encryptionKey = config.encryptionKey
  const setting = encryptionKey === undefined ? undefined : parseEncryptionKeySetting(encryptionKey)
  if (setting?.kind === 'vault') {
    const secret = await secrets.get(setting.path)
    encryptionKey = secret.data[setting.field]
    if (encryptionKey === undefined) throw new ConfigError([`TOKEN_ENCRYPTION_KEY: the Vault secret "${setting.path}" has no field "${setting.field}"`])
  }
  const store = createGrantStore(config, { log, now: options.now, encryptionKey })
  if (store.kind === 'redis') {
    // A Redis that is down at start: the broker runs degraded, minting per replica; the store reconnects by itself.
    await store.ready(storeReadyWaitMs).catch((err: unknown) => { log.warn({ err }, 'grant store not reachable at start; starting degraded') })
  }
  return store
}

export interface BrokerParts {
  log: Logger
  providers?: BrokerProviders | undefined
  clock?: Clock | undefined
  observer?: BrokerObserver | undefined
  options?: BrokerOptions | undefined
}

/** The broker over a store and secrets, for the configured credentials. */
export function createBrokerFor (config: Config, store: GrantStore, secrets: Secrets, parts: BrokerParts): Broker {
  return createBroker({
    credentials: config.credentials,
    store,
    secrets: secrets.manager,
    secretsKind: secrets.kind,
    providers: parts.providers ?? createProviderRegistry(),
    log: parts.log,
    clock: parts.clock,
    observer: parts.observer,
    options: parts.options
  })
}

export interface Engine {
  broker: Broker
  store: GrantStore
  secrets: SecretManager
  /** Closes the broker, then the store and secrets it uses (the order the app's plugins close in). */
  close: () => Promise<void>
}

/** The whole engine without the HTTP app (tests, benchmarks): secrets, store and broker, not yet started. */
export async function assembleEngine (config: Config, parts: BrokerParts & { secretCheckIntervalMs?: number | undefined, wrapStore?: (store: GrantStore) => GrantStore }): Promise<Engine> {
  const secrets = await createSecretsFor(config, parts.log, { checkIntervalMs: parts.secretCheckIntervalMs })
  const inner = await createStoreFor(config, secrets.manager, parts.log, { now: parts.clock?.now })
  const store = parts.wrapStore?.(inner) ?? inner
  const broker = createBrokerFor(config, store, secrets, parts)
  return {
    broker,
    store,
    secrets: secrets.manager,
    close: async () => {
      await broker.close()
      await inner.close()
      await secrets.manager.close()
    }
  }
}
