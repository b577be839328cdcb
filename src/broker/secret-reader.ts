import type { CredentialConfig } from '../config.js'
import { BrokerError, SecretError } from '../errors.js'
import type { SecretValue } from '../secrets/types.js'
import type { BrokerSecrets } from './types.js'

/** Reads a credential's secret, held (`fresh: false`) or re-read from the source; a failure is CB_SECRET_UNAVAILABLE. */
export type SecretReader = (credential: CredentialConfig, fresh: boolean) => Promise<SecretValue>

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
