/**
 * The adapter of a Kigo user's session grant: made with the credential's partner token, renewed with the
 * session's refresh token (the minter falls back to a new session when that is refused). The partner
 * token never leaves the broker.
 */
import { ProviderError } from '../errors.js'
import type { SessionUser, TokenAdapter, UserSessions } from '../providers/types.js'
import type { TokenCredential } from './grant-state.js'
import type { TokenService } from './token-service.js'

/** The partner token a session is made with must outlive the call that uses it; a few seconds is plenty. */
const partnerMinTtlSeconds = 5

export function createUserSessionAdapter (credential: TokenCredential, user: SessionUser, sessions: UserSessions, tokens: Pick<TokenService, 'ownGrant' | 'replaceOwnGrant'>): TokenAdapter {
  return {
    kind: 'token',
    provider: credential.config.provider,
    // The session is made with the partner token, not the client secret.
    secretFields: [],
    mint: async (_secret, ctx) => {
      const partner = await tokens.ownGrant(credential, partnerMinTtlSeconds)
      try {
        return await sessions.create(partner.accessToken, user, ctx)
      } catch (err) {
        if (!(err instanceof ProviderError) || err.status !== 401) throw err
      }
      // The partner token was refused (expired or revoked at Kigo): replace it once — deduplicated with
      // every other caller and replica — and try again; a second refusal is not retried here.
      const renewed = await tokens.replaceOwnGrant(credential, partner.accessToken)
      try {
        return await sessions.create(renewed.accessToken, user, ctx)
      } catch (err) {
        if (err instanceof ProviderError && err.status === 401) throw new ProviderError('transient', 'kigo user session: a new partner token was refused too', { status: 401, cause: err })
        throw err
      }
    },
    refresh: async (grant, _secret, ctx) => await sessions.refresh(grant, ctx)
  }
}
