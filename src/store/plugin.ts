import fp from 'fastify-plugin'
import { createStoreFor } from '../assemble.js'
import type { GrantStore } from './types.js'

declare module 'fastify' {
  interface FastifyInstance {
    store: GrantStore
  }
}

/** Decorates `store`: Redis when configured, else the embedded in-memory store (see assemble.ts). */
export const storePlugin = fp<{ store?: GrantStore | undefined, now?: (() => number) | undefined }>(async (app, options) => {
  const store = options.store ?? await createStoreFor(app.config, app.secrets, app.logger.child({ component: 'store' }), { now: options.now })
  app.decorate('store', store)
  const owned = options.store === undefined
  app.addHook('onClose', async () => { if (owned) await store.close() })
}, { name: 'store', fastify: '5.x', dependencies: ['config', 'secrets'] })
