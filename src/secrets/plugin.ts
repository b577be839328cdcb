import fp from 'fastify-plugin'
import type { SecretSource } from './types.js'
import { createSecretSource } from './index.js'
import { createSecretManager, type SecretManager } from './secret-manager.js'

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
  const log = app.logger.child({ component: 'secrets' })
  const source = options.source ?? createSecretSource(app.config, log)
  const manager = createSecretManager({ source, log, intervalMs: options.checkIntervalMs ?? app.config.secretCheckIntervalSeconds * 1000 })
  await manager.start()
  app.decorate('secrets', manager)
  app.decorate('secretSourceKind', source.kind)
  app.addHook('onClose', async () => { await manager.close() })
}, { name: 'secrets', fastify: '5.x', dependencies: ['config'] })
