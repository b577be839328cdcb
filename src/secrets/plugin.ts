import fp from 'fastify-plugin'
import { createSecretsFor } from '../assemble.js'
import type { SecretManager } from './secret-manager.js'
import type { SecretSource } from './types.js'

declare module 'fastify' {
  interface FastifyInstance {
    secrets: SecretManager
    secretSourceKind: SecretSource['kind']
  }
}

/**
 * Decorates `secrets`: the held-secret cache with rotation checks over Vault (VAULT_ADDR) or, in embedded
 * mode, a local JSON file. Vault login happens here, before anything reads a secret.
 */
export const secretsPlugin = fp<{ source?: SecretSource | undefined, checkIntervalMs?: number | undefined }>(async (app, options) => {
  const { manager, kind } = await createSecretsFor(app.config, app.logger.child({ component: 'secrets' }), options)
  app.decorate('secrets', manager)
  app.decorate('secretSourceKind', kind)
  app.addHook('onClose', async () => { await manager.close() })
}, { name: 'secrets', fastify: '5.x', dependencies: ['config'] })
