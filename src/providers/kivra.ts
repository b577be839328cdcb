/**
 * Kivra sender API: OAuth2 client credentials with HTTP Basic, 8 h opaque tokens, no refresh token
 * ("refresh" = mint again). Contract: docs/providers.md § Kivra.
 */
import { z } from 'zod'
import { endpointUrlOf, grantFor, requireSecretFields, secretField, statedLifetimeSeconds } from './common.js'
import { failureFromAnswer, parseJsonAnswer, readErrorBody, sendRequest } from './http.js'
import type { Grant, ProviderContext, SecretData, TokenAdapter, TokenProviderDescriptor } from './types.js'
import { kivraWebhookVerifier } from './webhooks.js'

/** Documented hosts (docs/providers.md § Kivra). */
const hosts = {
  production: 'https://sender.api.kivra.com',
  sandbox: 'https://sender.sandbox-api.kivra.com'
} as const

/** Documented lifetime, used only when an answer has no `expires_in` and no `lifetime_seconds` is configured. */
const defaultLifetimeSeconds = 28_800

const secretFields = ['client_id', 'client_secret'] as const

/** 40103 invalid grant, 40104 invalid client: the client secret is wrong or rotated (docs/providers.md). */
const credentialErrorCodes = new Set(['40103', '40104'])

const TokenResponseSchema = z.object({
  access_token: z.string().min(1),
  token_type: z.string().min(1).optional(),
  // Checked separately: absent is tolerated, garbage is not.
  expires_in: z.unknown().optional(),
  scope: z.string().optional()
})

// `code` is five digits, "sometimes a string, sometimes a number" (docs/providers.md).
const ErrorBodySchema = z.object({
  code: z.union([z.string(), z.number()]).optional(),
  short_message: z.string().optional()
})

/** Creates the Kivra token adapter. */
export function createKivraAdapter (): TokenAdapter {
  return {
    kind: 'token',
    provider: 'kivra',
    secretFields,
    mint: async (secret: SecretData, ctx: ProviderContext): Promise<Grant> => {
      requireSecretFields('kivra', secret, secretFields)
      const operation = 'kivra mint'
      const { credential } = ctx
      // The pair is base64'd as is: Kivra documents base64(client_id:client_secret), without the RFC 6749
      // form-encoding that generic OAuth2 clients apply, and without a trailing newline.
      const basic = Buffer.from(`${secretField(secret, 'client_id')}:${secretField(secret, 'client_secret')}`, 'utf8').toString('base64')
      const form = new URLSearchParams({ grant_type: 'client_credentials' })
      // A narrower scope is a different token; the broker keys its cache on the configured scope.
      if (credential.scope !== undefined) form.set('scope', credential.scope)

      const obtainedAt = ctx.now()
      const answer = await sendRequest({
        operation,
        method: 'POST',
        url: endpointUrlOf(credential, hosts, '/v1/auth'),
        headers: { authorization: `Basic ${basic}` },
        form
      }, ctx)
      const correlationId = answer.header('x-correlation-id')

      if (answer.status < 200 || answer.status > 299) {
        const body = readErrorBody(answer, ErrorBodySchema)
        const providerCode = body?.code === undefined ? answer.header('x-error-code') : String(body.code)
        const rejected = answer.status === 401 || (providerCode !== undefined && credentialErrorCodes.has(providerCode))
        throw failureFromAnswer(answer, {
          operation,
          kind: rejected ? 'permanent' : undefined,
          providerCode,
          providerMessage: body?.short_message,
          correlationId,
          secret,
          nowMs: ctx.now()
        })
      }

      const token = parseJsonAnswer(answer, TokenResponseSchema, operation, correlationId)
      let lifetimeSeconds = statedLifetimeSeconds(token.expires_in, { operation, field: 'expires_in', status: answer.status, correlationId })
      if (lifetimeSeconds === undefined) {
        lifetimeSeconds = credential.lifetime_seconds ?? defaultLifetimeSeconds
        ctx.log.warn({ correlationId, lifetimeSeconds }, 'kivra answer has no expires_in; using the configured or documented lifetime')
      }
      ctx.log.info({ correlationId }, 'kivra token minted')
      return grantFor({ accessToken: token.access_token, tokenType: token.token_type, scope: token.scope ?? credential.scope }, obtainedAt, lifetimeSeconds)
    }
  }
}

export const kivraProvider: TokenProviderDescriptor = {
  mechanism: 'token',
  hosts,
  defaultLifetimeSeconds,
  secretFields,
  optionalSecretFields: ['webhookSecret'],
  acceptsScope: true,
  alwaysBackendOnly: true,
  // 40015 invalid token on a call made with the token; its HTTP status is 400 (docs/providers.md § Kivra).
  invalidTokenCodes: ['40015'],
  webhookVerifier: kivraWebhookVerifier,
  createAdapter: createKivraAdapter
}
