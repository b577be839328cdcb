/**
 * Klavi Link API: an access token (a JWT) from accessKey + secretKey with its own `expireIn`, renewed by
 * `GET /data/v1/refresh` with the current token. Contract: docs/providers.md § Klavi.
 */
import { z } from 'zod'
import { endpointUrlOf, grantFor, requireSecretFields, secretField, statedLifetimeSeconds } from './common.js'
import { failureFromAnswer, parseJsonAnswer, readErrorBody, sendRequest, type HttpAnswer } from './http.js'
import type { Grant, ProviderContext, SecretData, TokenAdapter, TokenProviderDescriptor } from './types.js'
import { klaviWebhookVerifier } from './webhooks.js'

/** Documented hosts (docs/providers.md § Klavi); the "testing" host https://api-testing.klavi.ai is reached with base_url. */
const hosts = {
  production: 'https://api.klavi.ai',
  sandbox: 'https://api-sandbox.klavi.ai'
} as const

/** Documented `expireIn`; used (unless `lifetime_seconds` is configured) when the answer's is missing or garbage. */
const defaultLifetimeSeconds = 1800

const secretFields = ['accessKey', 'secretKey'] as const

const TokenResponseSchema = z.object({
  accessToken: z.string().min(1),
  // "Documented as a string but shown as a number" (docs/providers.md): read by statedLifetimeSeconds.
  expireIn: z.unknown().optional()
})

// 401 { statusCode, error, message }; 416 business errors carry their own statusCode in the body.
const ErrorBodySchema = z.object({
  statusCode: z.union([z.number(), z.string()]).optional(),
  error: z.string().optional(),
  message: z.string().optional()
})

/** Creates the Klavi token adapter (mint and refresh). */
export function createKlaviAdapter (): TokenAdapter {

  function failure (answer: HttpAnswer, operation: string, secret: SecretData, ctx: ProviderContext): Error {
    const body = readErrorBody(answer, ErrorBodySchema)
    return failureFromAnswer(answer, {
      operation,
      providerCode: body?.statusCode === undefined ? undefined : String(body.statusCode),
      providerMessage: body?.message ?? body?.error,
      secret,
      nowMs: ctx.now()
    })
  }

  function toGrant (answer: HttpAnswer, operation: string, obtainedAt: number, ctx: ProviderContext): Grant {
    const token = parseJsonAnswer(answer, TokenResponseSchema, operation)
    let lifetimeSeconds = statedLifetimeSeconds(token.expireIn, { operation, field: 'expireIn', status: answer.status })
    if (lifetimeSeconds === undefined) {
      lifetimeSeconds = ctx.credential.lifetime_seconds ?? defaultLifetimeSeconds
      ctx.log.warn({ operation, lifetimeSeconds }, 'klavi answer has no expireIn; using the configured or documented lifetime')
    }
    return grantFor({ accessToken: token.accessToken }, obtainedAt, lifetimeSeconds)
  }

  /** One call to a documented endpoint; `obtainedAt` is taken before it is sent (the lifetime counts from then). */
  async function call (operation: string, request: { method: 'GET' | 'POST', path: string, json?: unknown, headers?: Record<string, string> }, ctx: ProviderContext): Promise<{ answer: HttpAnswer, obtainedAt: number }> {
    const obtainedAt = ctx.now()
    const answer = await sendRequest({ operation, method: request.method, url: endpointUrlOf(ctx.credential, hosts, request.path), json: request.json, headers: request.headers }, ctx)
    return { answer, obtainedAt }
  }

  async function mint (secret: SecretData, ctx: ProviderContext): Promise<Grant> {
    requireSecretFields('klavi', secret, secretFields)
    const operation = 'klavi mint'
    const { answer, obtainedAt } = await call(operation, { method: 'POST', path: '/data/v1/auth', json: { accessKey: secretField(secret, 'accessKey'), secretKey: secretField(secret, 'secretKey') } }, ctx)
    if (answer.status < 200 || answer.status > 299) throw failure(answer, operation, secret, ctx)
    const grant = toGrant(answer, operation, obtainedAt, ctx)
    ctx.log.info({}, 'klavi token minted')
    return grant
  }

  async function refresh (grant: Grant, secret: SecretData, ctx: ProviderContext): Promise<Grant> {
    requireSecretFields('klavi', secret, secretFields)
    // An expired token cannot be refreshed (Klavi answers 401); skip the round trip.
    if (grant.expiresAt <= ctx.now()) {
      ctx.log.info({ reason: 'expired' }, 'klavi refresh not possible; minting a new token')
      return await mint(secret, ctx)
    }
    const operation = 'klavi refresh'
    const { answer, obtainedAt } = await call(operation, { method: 'GET', path: '/data/v1/refresh', headers: { authorization: `Bearer ${grant.accessToken}` } }, ctx)
    // "If refresh answers 401, fall back to /auth" (docs/providers.md): the token is invalid or expired on
    // Klavi's side, which says nothing about the client secret.
    if (answer.status === 401) {
      ctx.log.info({ reason: 'refresh-rejected' }, 'klavi refresh not possible; minting a new token')
      return await mint(secret, ctx)
    }
    if (answer.status < 200 || answer.status > 299) throw failure(answer, operation, { ...secret, accessToken: grant.accessToken }, ctx)
    const renewed = toGrant(answer, operation, obtainedAt, ctx)
    ctx.log.info({}, 'klavi token refreshed')
    return renewed
  }

  return { kind: 'token', provider: 'klavi', secretFields, mint, refresh }
}

export const klaviProvider: TokenProviderDescriptor = {
  mechanism: 'token',
  hosts,
  defaultLifetimeSeconds,
  secretFields,
  optionalSecretFields: [],
  acceptsScope: false,
  alwaysBackendOnly: true,
  webhookVerifier: klaviWebhookVerifier,
  createAdapter: createKlaviAdapter
}
