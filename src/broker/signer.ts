/** Request signatures (SIR Giving) and webhook verification, with the secrets the broker holds. */
import { BrokerError } from '../errors.js'
import type { Clock } from '../time.js'
import type { CredentialTable } from './credential-table.js'
import type { Minter } from './minter.js'
import type { SecretReader } from './secret-reader.js'
import { toBrokerError } from './token-service.js'
import type { Broker, BrokerProviders } from './types.js'

export type Signer = Pick<Broker, 'sign' | 'verifyWebhook'>

export interface SignerDeps {
  table: CredentialTable
  readSecret: SecretReader
  providers: BrokerProviders
  context: Minter['context']
  clock: Clock
  webhookToleranceSeconds: number
}

export function createSigner ({ table, readSecret, providers, context, clock, webhookToleranceSeconds }: SignerDeps): Signer {
  return {
    async sign (credentialId, request) {
      const entry = table.entry(credentialId)
      if (entry.mechanism !== 'signing') {
        throw new BrokerError('CB_UNSUPPORTED_OPERATION', `credential "${credentialId}" is a token credential; it does not sign requests (use /token)`)
      }
      const secret = await readSecret(entry.config, false)
      entry.secretVersion = secret.version
      try {
        return entry.adapter.sign(request, secret.data, context({ credential: entry.config }))
      } catch (err) {
        throw toBrokerError(credentialId, err)
      }
    },

    async verifyWebhook (credentialId, input) {
      const { config } = table.entry(credentialId)
      const verifier = providers.webhookVerifierFor(config.provider)
      if (verifier === undefined) {
        throw new BrokerError('CB_UNSUPPORTED_OPERATION', `provider "${config.provider}" has no webhook signature scheme`)
      }
      const secret = await readSecret(config, false)
      return verifier.verify(input, secret.data, { now: clock.now, toleranceSeconds: webhookToleranceSeconds })
    }
  }
}
