import fp from 'fastify-plugin'
import type { GrantStore } from './types.js'
import { createGrantStore } from './index.js'
import { parseEncryptionKeySetting } from './encryption.js'
import { ConfigError } from '../errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    store: GrantStore
  }
}

/**
 * Decorates `store`: Redis when configured, else the embedded in-memory store. A TOKEN_ENCRYPTION_KEY of
 * the form "vault:<mount>/<path>#<field>" is read from the secret source first, so every replica gets
 * the same key without it ever sitting in an environment variable.
 */
export const storePlugin = fp<{ store?: GrantStore | undefined, now?: (() => number) | undefined }>(async (app, options) => {
  let store = options.store
  if (store === undefined) {
    let encryptionKey = app.config.encryptionKey
    const setting = encryptionKey === undefined ? undefined : parseEncryptionKeySetting(encryptionKey)
    if (setting?.kind === 'vault') {
      const secret = await app.secrets.get(setting.path)
      encryptionKey = secret.data[setting.field]
      if (encryptionKey === undefined) throw new ConfigError([`TOKEN_ENCRYPTION_KEY: the Vault secret "${setting.path}" has no field "${setting.field}"`])
    }
    const redisOrMemory = createGrantStore(app.config, { log: app.logger.child({ component: 'store' }), now: options.now, encryptionKey })
    if (redisOrMemory.kind === 'redis') {
      // Wait (bounded) for Redis so a normal start begins ready; a Redis that is down does not stop the
      // broker from starting: it runs degraded, minting per replica, and the store reconnects by itself.
      await redisOrMemory.ready(5000).catch((err: unknown) => { app.log.warn({ err }, 'grant store not reachable at start; starting degraded') })
    }
    store = redisOrMemory
  }
  app.decorate('store', store)
  const owned = options.store === undefined
  app.addHook('onClose', async () => { if (owned) await store.close() })
}, { name: 'store', fastify: '5.x', dependencies: ['config', 'secrets'] })
