/**
 * Kigo partner API: a partner session token from api_key + partner_id, documented to live 30 minutes, with
 * no expiry field in the answer. Contract: docs/providers.md § Kigo.
 */
import { z } from 'zod'
import { endpointUrlOf, grantFor, jwtExpiryMs, requireSecretFields, secretField } from './common.js'
import { failureFromAnswer, parseJsonAnswer, readErrorBody, sendRequest } from './http.js'
import type { Grant, ProviderContext, SecretData, TokenAdapter, TokenProviderDescriptor } from './types.js'
import { ProviderError } from '../errors.js'

/**
 * From a public Kigo front end, not the official docs (docs/providers.md § Kigo); "sandbox" maps to their
 * staging host.
 */
const hosts = {
  production: 'https://api.kigodigital.net',
  sandbox: 'https://kigo-core-server-stage.kigodigital.net'
} as const

/** The documented partner token life; `lifetime_seconds` overrides it. */
const defaultLifetimeSeconds = 1800

const secretFields = ['api_key', 'partner_id'] as const

const SessionResponseSchema = z.object({ token: z.string().min(1) })

// Error bodies "look like { message }" — an inference in docs/providers.md, so read leniently.
const ErrorBodySchema = z.object({ message: z.string().optional() })

/** Creates the Kigo token adapter. */
export function createKigoAdapter (): TokenAdapter {
  return {
    kind: 'token',
    provider: 'kigo',
    secretFields,
    mint: async (secret: SecretData, ctx: ProviderContext): Promise<Grant> => {
      requireSecretFields('kigo', secret, secretFields)
      const operation = 'kigo mint'
      const { credential } = ctx
      const obtainedAt = ctx.now()
      const answer = await sendRequest({
        operation,
        method: 'POST',
        url: endpointUrlOf(credential, hosts, '/api/v1/auth/sessions'),
        json: { api_key: secretField(secret, 'api_key'), partner_id: secretField(secret, 'partner_id') }
      }, ctx)

      if (answer.status < 200 || answer.status > 299) {
        throw failureFromAnswer(answer, {
          operation,
          providerMessage: readErrorBody(answer, ErrorBodySchema)?.message,
          secret,
          nowMs: ctx.now()
        })
      }

      const { token } = parseJsonAnswer(answer, SessionResponseSchema, operation)
      // The answer has no expiry field. If the token is a JWT with `exp`, that is the provider's own word
      // on its life and beats the documented 30 minutes (an inference in docs/providers.md).
      const expMs = jwtExpiryMs(token, obtainedAt)
      if (expMs !== undefined) {
        if (expMs <= obtainedAt) {
          throw new ProviderError('bad-response', `${operation}: HTTP ${answer.status} with a token whose exp is already past (check the clock)`, { status: answer.status })
        }
        ctx.log.info({ credentialId: credential.id, lifetimeSource: 'jwt-exp' }, 'kigo token minted')
        return { ...grantFor({ accessToken: token }, obtainedAt, 0), expiresAt: expMs }
      }
      ctx.log.info({ credentialId: credential.id, lifetimeSource: credential.lifetime_seconds === undefined ? 'documented' : 'configured' }, 'kigo token minted')
      return grantFor({ accessToken: token }, obtainedAt, credential.lifetime_seconds ?? defaultLifetimeSeconds)
    }
  }
}

export const kigoProvider: TokenProviderDescriptor = {
  mechanism: 'token',
  hosts,
  defaultLifetimeSeconds,
  secretFields,
  optionalSecretFields: [],
  acceptsScope: false,
  alwaysBackendOnly: true,
  webhookVerifier: undefined,
  createAdapter: createKigoAdapter
}
