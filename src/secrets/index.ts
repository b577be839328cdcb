import type { SecretsLog } from './log.js'
import type { Config } from '../config.js'
import { createFileSecretSource } from './file-source.js'
import { type SecretSource } from './types.js'
import { createVaultSecretSource } from './vault-source.js'
import { SecretError } from '../errors.js'

export type { SecretsLog } from './log.js'
export type { SecretSource, SecretValue, SecretSourceHealth, SecretSourceState } from './types.js'
export { createSecretManager } from './secret-manager.js'
export type { SecretManager, SecretManagerDeps, RotationListener } from './secret-manager.js'
export { createVaultSecretSource, splitSecretPath } from './vault-source.js'
export type { VaultSecretSourceDeps } from './vault-source.js'
export { createFileSecretSource } from './file-source.js'
export type { FileSecretSourceDeps } from './file-source.js'

/**
 * The secret source the configuration asks for: Vault when VAULT_ADDR is set, else the local secrets
 * file (embedded mode; loadConfig already refuses it when NODE_ENV=production). Not started: call
 * `start()` (or the manager's) once.
 */
export function createSecretSource (config: Pick<Config, 'vault' | 'secretsFile' | 'usingExampleSecrets'>, log: SecretsLog): SecretSource {
  if (config.vault !== undefined) return createVaultSecretSource({ config: config.vault, log })
  if (config.secretsFile !== undefined) {
    return createFileSecretSource({ file: config.secretsFile, log, usingExample: config.usingExampleSecrets })
  }
  throw new SecretError('invalid', 'no secret source configured: set VAULT_ADDR (Vault) or SECRETS_FILE (local file)')
}
