/**
 * Any RFC 6749 authorization server: the client credentials grant with client_secret_basic or
 * client_secret_post, built on oauth4webapi against the configured `token_url` (no discovery: a token
 * endpoint is all a client credentials client needs, and it keeps startup free of network calls).
 */
import { isLoopbackHost } from '../config/provider-url.js'
import * as oauth from 'oauth4webapi'
import { grantFor, requireSecretFields, secretField, statedJwtExpiryMs, statedLifetimeSeconds } from './common.js'
import { kindForStatus, parseRetryAfter, safeText } from './http.js'
import type { Grant, ProviderContext, SecretData, TokenAdapter, TokenProviderDescriptor } from './types.js'
import { ProviderError } from '../errors.js'

/** Used when an answer has no expires_in, the token is no JWT with exp, and no lifetime_seconds is configured. */
const defaultLifetimeSeconds = 3600

const secretFields = ['client_id', 'client_secret'] as const

/** RFC 6749 §5.2 errors that mean our client credentials are wrong (or the client is not allowed this grant). */
const credentialErrors = new Set(['invalid_client', 'unauthorized_client', 'invalid_grant'])

export { isLoopbackHost } from '../config/provider-url.js'

/** Creates the generic OAuth2 client credentials adapter. */
export function createOAuth2Adapter (): TokenAdapter {
  return {
    kind: 'token',
    provider: 'oauth2',
    secretFields,
    mint: async (secret: SecretData, ctx: ProviderContext): Promise<Grant> => {
      requireSecretFields('oauth2', secret, secretFields)
      const operation = 'oauth2 mint'
      const { credential } = ctx
      if (credential.token_url === undefined) {
        throw new ProviderError('permanent', `${operation}: the credential has no token_url`)
      }
      const tokenUrl = new URL(credential.token_url)
      // Config already refuses other http URLs; this keeps oauth4webapi's HTTPS requirement for the rest.
      const insecureAllowed = tokenUrl.protocol === 'http:' && (isLoopbackHost(tokenUrl.hostname) || credential.allow_insecure_http)
      if (tokenUrl.protocol !== 'https:' && !insecureAllowed) {
        throw new ProviderError('permanent', `${operation}: token_url must use https (plain http is allowed for loopback hosts, or with allow_insecure_http)`)
      }
      const as: oauth.AuthorizationServer = { issuer: tokenUrl.origin, token_endpoint: tokenUrl.href }
      const client: oauth.Client = { client_id: secretField(secret, 'client_id') }
      const clientSecret = secretField(secret, 'client_secret')
      const clientAuth = credential.client_auth === 'post' ? oauth.ClientSecretPost(clientSecret) : oauth.ClientSecretBasic(clientSecret)
      const parameters = new URLSearchParams()
      if (credential.scope !== undefined) parameters.set('scope', credential.scope)
      // Auth0-style `audience`; servers that do not know it ignore unknown parameters (RFC 6749 §3.2).
      if (credential.audience !== undefined) parameters.set('audience', credential.audience)

      const deadline = AbortSignal.timeout(credential.timeout_ms)
      const signal = ctx.signal === undefined ? deadline : AbortSignal.any([ctx.signal, deadline])
      const obtainedAt = ctx.now()
      let response: Response
      try {
        response = await oauth.clientCredentialsGrantRequest(as, client, clientAuth, parameters, {
          signal,
          [oauth.allowInsecureRequests]: insecureAllowed
        })
      } catch (err) {
        throw networkFailure(err, operation, deadline, credential.timeout_ms, ctx)
      }

      // oauth4webapi treats every non-200 alike; retry hints (5xx, 429 + Retry-After) are ours to read.
      if (kindForStatus(response.status) === 'transient') {
        await response.body?.cancel().catch(() => {})
        throw new ProviderError('transient', `${operation}: provider unavailable (HTTP ${response.status})`, {
          status: response.status,
          retryAfterMs: parseRetryAfter(response.headers.get('retry-after') ?? undefined, ctx.now())
        })
      }

      let token: oauth.TokenEndpointResponse
      try {
        token = await oauth.processClientCredentialsResponse(as, client, response)
      } catch (err) {
        if (deadline.aborted || ctx.signal?.aborted === true) throw networkFailure(err, operation, deadline, credential.timeout_ms, ctx)
        throw processingFailure(err, operation, response.status, secret)
      }

      const source = { operation, status: response.status }
      let lifetimeSeconds = statedLifetimeSeconds(token.expires_in, { ...source, field: 'expires_in' })
      if (lifetimeSeconds === undefined) {
        // expires_in is only RECOMMENDED (RFC 6749 §5.1): a JWT's exp, then configuration, then a default.
        const expMs = statedJwtExpiryMs(token.access_token, obtainedAt, { ...source, field: 'exp' })
        if (expMs !== undefined) {
          ctx.log.info({ lifetimeSource: 'jwt-exp' }, 'oauth2 token minted')
          return { ...grantFor({ accessToken: token.access_token, tokenType: token.token_type, scope: token.scope ?? credential.scope }, obtainedAt, 0), expiresAt: expMs }
        }
        lifetimeSeconds = credential.lifetime_seconds ?? defaultLifetimeSeconds
        ctx.log.warn({ lifetimeSeconds }, 'oauth2 answer has no expires_in; using the configured or default lifetime')
      }
      ctx.log.info({ lifetimeSource: 'expires_in' }, 'oauth2 token minted')
      return grantFor({ accessToken: token.access_token, tokenType: token.token_type, scope: token.scope ?? credential.scope }, obtainedAt, lifetimeSeconds)
    }
  }
}

function networkFailure (err: unknown, operation: string, deadline: AbortSignal, timeoutMs: number, ctx: ProviderContext): ProviderError {
  if (err instanceof ProviderError) return err
  if (deadline.aborted) return new ProviderError('transient', `${operation}: no answer within ${timeoutMs} ms`, { cause: err })
  if (ctx.signal?.aborted === true) return new ProviderError('transient', `${operation}: request aborted`, { cause: err })
  if (err instanceof oauth.OperationProcessingError) {
    // Raised before sending: a token_url oauth4webapi refuses is configuration, not an outage.
    return new ProviderError('permanent', `${operation}: token_url refused (${err.code})`)
  }
  // fetch() fails with TypeError("fetch failed") whose cause is the socket error (refused, reset, closed).
  const cause = (err as { cause?: { code?: unknown } }).cause
  const code = typeof cause?.code === 'string' ? ` (${cause.code})` : ''
  return new ProviderError('transient', `${operation}: network error${code}`, { cause: err })
}

/**
 * Maps oauth4webapi's processing errors. Their `cause` can hold the parsed token response (access token
 * included), so they are never attached as a cause: only their code and the RFC 6749 error code survive.
 */
function processingFailure (err: unknown, operation: string, status: number, secret: SecretData): ProviderError {
  if (err instanceof oauth.ResponseBodyError) {
    const providerCode = safeText(err.error, secret)
    const description = err.error_description === undefined ? '' : `: ${safeText(err.error_description, secret)}`
    const kind = credentialErrors.has(err.error) || status === 401 ? 'permanent' : kindForStatus(status)
    const what = kind === 'permanent' && credentialErrors.has(err.error) ? 'the provider rejected the client credentials' : 'request refused'
    return new ProviderError(kind, `${operation}: ${what} (HTTP ${status}, ${providerCode}${description})`, { status, providerCode })
  }
  if (err instanceof oauth.WWWAuthenticateChallengeError) {
    // A 401 with a WWW-Authenticate challenge: the server did not accept our client authentication.
    const challenge = err.cause[0]
    const providerCode = typeof challenge?.parameters.error === 'string' ? safeText(challenge.parameters.error, secret) : undefined
    return new ProviderError('permanent', `${operation}: the provider rejected the client credentials (HTTP ${status}${providerCode === undefined ? '' : `, ${providerCode}`})`, { status, providerCode })
  }
  if (err instanceof oauth.OperationProcessingError || err instanceof oauth.UnsupportedOperationError) {
    const code = 'code' in err && typeof err.code === 'string' ? err.code : err.name
    if (status >= 400) {
      return new ProviderError(kindForStatus(status), `${operation}: request refused (HTTP ${status}, ${code})`, { status })
    }
    return new ProviderError('bad-response', `${operation}: HTTP ${status} with an unusable token response (${code})`, { status })
  }
  return new ProviderError('bad-response', `${operation}: HTTP ${status} could not be processed`, { status })
}

/** Any OAuth2 server: no documented host (each credential names its token_url), backend-only unless configured otherwise. */
export const oauth2Provider: TokenProviderDescriptor = {
  mechanism: 'token',
  hosts: undefined,
  defaultLifetimeSeconds,
  secretFields,
  optionalSecretFields: [],
  acceptsScope: true,
  alwaysBackendOnly: false,
  webhookVerifier: undefined,
  createAdapter: createOAuth2Adapter
}
