import type { CredentialConfig } from '../config.js'
import { BrokerError, SecretError } from '../errors.js'
import type { SecretValue } from '../secrets/types.js'
import type { BrokerSecrets } from './types.js'

/** Reads a credential's secret, held (`fresh: false`) or re-read from the source; a failure is CB_SECRET_UNAVAILABLE. */
export type SecretReader = (credential: CredentialConfig, fresh: boolean) => Promise<SecretValue>

/**
 * The secret version to fall back on when the provider rejects `current`: the one before it, if the
 * source keeps versions, it can still be read, and `current` was written less than the credential's
 * `rollover_window_seconds` ago (a new secret that never worked, not an old one the provider revoked).
 */
export async function rollbackSecret (secrets: BrokerSecrets, credential: CredentialConfig, current: SecretValue, now: number): Promise<SecretValue | undefined> {
  if (credential.rollover_window_seconds === 0 || current.version <= 1) return undefined
  const previous = await secrets.previous(credential.secret, current.version).catch(() => undefined)
  if (previous === undefined || now - previous.currentCreatedAt > credential.rollover_window_seconds * 1000) return undefined
  return previous.value
}

export function createSecretReader (secrets: BrokerSecrets): SecretReader {
  return async (credential, fresh) => {
    try {
      return fresh ? await secrets.reread(credential.secret) : await secrets.get(credential.secret)
    } catch (err) {
      if (err instanceof SecretError) {
        throw new BrokerError('CB_SECRET_UNAVAILABLE', `the secret of credential "${credential.id}" could not be read (${err.kind})`, { cause: err, retryAfterSeconds: err.kind === 'unavailable' ? 5 : undefined })
      }
      throw err
    }
  }
}
