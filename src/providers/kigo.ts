/**
 * Kigo partner API: a partner session token from api_key + partner_id, documented to live 30 minutes, with
 * no expiry field in the answer; and user-level sessions made with that partner token, renewed with their
 * refresh token. Contract: docs/providers.md § Kigo.
 */
import { z } from 'zod'
import { endpointUrlOf, grantFor, requireSecretFields, secretField, statedJwtExpiryMs } from './common.js'
import { failureFromAnswer, parseJsonAnswer, readErrorBody, sendRequest, type HttpAnswer } from './http.js'
import type { Grant, ProviderContext, SecretData, SessionUser, TokenAdapter, TokenProviderDescriptor, UserSessions } from './types.js'
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
/** User sessions: `{ token, refresh_token }` (a refresh answer without a refresh token keeps the old one). */
const UserSessionResponseSchema = z.object({ token: z.string().min(1), refresh_token: z.string().min(1).optional() })

// Error bodies "look like { message }" — an inference in docs/providers.md, so read leniently.
const ErrorBodySchema = z.object({ message: z.string().optional() })

/** One POST to a documented endpoint; a non-2xx answer becomes a ProviderError (never quoting the body). */
async function post (operation: string, path: string, json: unknown, ctx: ProviderContext, extra: { headers?: Record<string, string>, secret?: SecretData } = {}): Promise<{ answer: HttpAnswer, obtainedAt: number }> {
  const obtainedAt = ctx.now()
  const answer = await sendRequest({ operation, method: 'POST', url: endpointUrlOf(ctx.credential, hosts, path), json, headers: extra.headers }, ctx)
  if (answer.status < 200 || answer.status > 299) {
    throw failureFromAnswer(answer, { operation, providerMessage: readErrorBody(answer, ErrorBodySchema)?.message, secret: extra.secret, nowMs: ctx.now() })
  }
  return { answer, obtainedAt }
}

/**
 * The grant of a session token. The answers have no expiry field: if the token is a JWT with `exp`, that
 * is the provider's own word on its life and beats the documented lifetime (an inference in
 * docs/providers.md); an `exp` already past is a bad answer (a clock problem).
 */
function sessionGrant (token: string, refreshToken: string | undefined, obtainedAt: number, lifetimeSeconds: number, operation: string, status: number): { grant: Grant, fromExp: boolean } {
  const expMs = statedJwtExpiryMs(token, obtainedAt, { operation, field: 'exp', status })
  if (expMs === undefined) return { grant: grantFor({ accessToken: token, refreshToken }, obtainedAt, lifetimeSeconds), fromExp: false }
  return { grant: { ...grantFor({ accessToken: token, refreshToken }, obtainedAt, 0), expiresAt: expMs }, fromExp: true }
}

/** Creates the Kigo token adapter (the partner token). */
export function createKigoAdapter (): TokenAdapter {
  return {
    kind: 'token',
    provider: 'kigo',
    secretFields,
    mint: async (secret: SecretData, ctx: ProviderContext): Promise<Grant> => {
      requireSecretFields('kigo', secret, secretFields)
      const operation = 'kigo mint'
      const { credential } = ctx
      const { answer, obtainedAt } = await post(operation, '/api/v1/auth/sessions', { api_key: secretField(secret, 'api_key'), partner_id: secretField(secret, 'partner_id') }, ctx, { secret })
      const { token } = parseJsonAnswer(answer, SessionResponseSchema, operation)
      const { grant, fromExp } = sessionGrant(token, undefined, obtainedAt, credential.lifetime_seconds ?? defaultLifetimeSeconds, operation, answer.status)
      const lifetimeSource = fromExp ? 'jwt-exp' : credential.lifetime_seconds === undefined ? 'documented' : 'configured'
      ctx.log.info({ lifetimeSource }, 'kigo token minted')
      return grant
    }
  }
}

/**
 * Kigo user sessions: `POST /api/v1/auth/sessions/accounts` with the partner token →
 * `{ token, refresh_token }`, renewed by `POST /api/v1/auth/sessions/accounts/refresh`. The user token's
 * life is 30 minutes in the guide and 1 hour in the reference: `user_sessions.lifetime_seconds` (default
 * 1800) unless the token is a JWT with `exp`. The user's email is sent to Kigo and nowhere else.
 */
export function createKigoUserSessions (): UserSessions {
  return {
    create: async (partnerToken: string, user: SessionUser, ctx: ProviderContext): Promise<Grant> => {
      const operation = 'kigo user session'
      const body: Record<string, string> = { external_user_id: user.external_user_id, user_email: user.user_email }
      if (user.external_program_id !== undefined) body.external_program_id = user.external_program_id
      if (user.brand_identifier !== undefined) body.brand_identifier = user.brand_identifier
      const { answer, obtainedAt } = await post(operation, '/api/v1/auth/sessions/accounts', body, ctx, { headers: { authorization: `Bearer ${partnerToken}` }, secret: { partnerToken, email: user.user_email } })
      const session = parseJsonAnswer(answer, UserSessionResponseSchema, operation)
      ctx.log.info({}, 'kigo user session created')
      return sessionGrant(session.token, session.refresh_token, obtainedAt, ctx.credential.user_sessions.lifetime_seconds, operation, answer.status).grant
    },
    refresh: async (grant: Grant, ctx: ProviderContext): Promise<Grant> => {
      const operation = 'kigo user session refresh'
      if (grant.refreshToken === undefined) throw new ProviderError('permanent', `${operation}: the session has no refresh token`)
      const { answer, obtainedAt } = await post(operation, '/api/v1/auth/sessions/accounts/refresh', { refresh_token: grant.refreshToken }, ctx, { secret: { refreshToken: grant.refreshToken } })
      const session = parseJsonAnswer(answer, UserSessionResponseSchema, operation)
      ctx.log.info({}, 'kigo user session refreshed')
      return sessionGrant(session.token, session.refresh_token, obtainedAt, ctx.credential.user_sessions.lifetime_seconds, operation, answer.status).grant
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
  createAdapter: createKigoAdapter,
  userSessions: createKigoUserSessions
}
