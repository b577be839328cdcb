import { createHash } from 'node:crypto'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { assertMayUse, mayUse } from '../auth/policy.js'
import type { Caller, CredentialConfig } from '../config.js'
import { BrokerError } from '../errors.js'
import { descriptorOf, expectedLifetimeSeconds } from '../providers/catalog.js'
import type { CredentialStatus, IssuedToken } from '../broker/types.js'
import { fingerprint, grantFingerprint } from '../broker/broker.js'
import { CredentialIdParams, CredentialStatusSchema, TokenSchema, problems } from './schemas.js'

/** Upper bound of min_ttl when neither config nor docs give a lifetime. */
const maxMinTtlSeconds = 86_400

export function maxLifetimeSeconds (credential: CredentialConfig): number {
  return expectedLifetimeSeconds(credential) ?? maxMinTtlSeconds
}

export function toStatusBody (status: CredentialStatus, kind: 'token' | 'signing'): z.infer<typeof CredentialStatusSchema> {
  const iso = (ms: number | undefined): string | undefined => ms === undefined ? undefined : new Date(ms).toISOString()
  return {
    id: status.id,
    provider: status.provider,
    environment: status.environment,
    kind,
    state: status.state,
    expires_at: iso(status.expiresAt),
    obtained_at: iso(status.obtainedAt),
    next_refresh_at: iso(status.nextRefreshAt),
    secret_version: status.secretVersion,
    consecutive_failures: status.consecutiveFailures,
    last_error: status.lastError === undefined ? undefined : { kind: status.lastError.kind, provider_code: status.lastError.providerCode, at: new Date(status.lastError.at).toISOString() }
  }
}

const expiryTexts = new WeakMap<IssuedToken['grant'], string>()

/** The ISO 8601 expiry of a grant, formatted once per grant (it is in every token answer and audit line). */
function expiryText (grant: IssuedToken['grant']): string {
  let text = expiryTexts.get(grant)
  if (text === undefined) {
    text = new Date(grant.expiresAt).toISOString()
    expiryTexts.set(grant, text)
  }
  return text
}

export const credentialKind = (credential: CredentialConfig): 'token' | 'signing' => descriptorOf(credential.provider).mechanism

/**
 * Digits only: a plain number coercion would read "" as 0 (a token about to expire instead of the default
 * 60 s), and "0x10" or "1e3" as numbers a caller most likely did not mean.
 */
const MinTtlQuery = z.object({
  min_ttl: z.preprocess(
    (value: unknown) => typeof value === 'string' && /^\d{1,9}$/.test(value) ? Number(value) : value,
    z.number({ error: 'expected an integer number of seconds' })
      .int('expected an integer number of seconds').min(0, 'expected 0 or more seconds').max(maxMinTtlSeconds, `expected at most ${maxMinTtlSeconds} seconds`)
  ).default(60)
    .describe('the token must stay valid for at least this many seconds (0 to the credential lifetime); default 60')
})

const RejectionBody = z.strictObject({
  access_token: z.string().min(1).max(16_384).describe('the token the provider rejected')
})

const SignatureBody = z.strictObject({
  method: z.string().regex(/^[A-Za-z]{3,10}$/, 'expected an HTTP method'),
  path: z.string().min(1).max(4096).regex(/^\/\S*$/, 'expected the request path with its query string, starting with "/"'),
  body_sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, 'expected the hex sha256 of the raw body (e3b0c442… for an empty body)')
})

const WebhookBody = z.strictObject({
  headers: z.record(z.string().max(256), z.union([z.string().max(8192), z.array(z.string().max(8192)).max(16)]))
    .describe('the webhook request headers as received (names in any case)'),
  body: z.string().max(1_000_000).describe('the raw webhook body, exactly as received'),
  body_encoding: z.enum(['utf8', 'base64']).default('utf8')
})

const WebhookResultSchema = z.object({
  valid: z.boolean(),
  reason: z.enum(['missing_signature', 'missing_timestamp', 'stale_timestamp', 'bad_signature', 'no_webhook_secret']).optional()
}).meta({ id: 'WebhookVerification' })

/**
 * The internal API for services: tokens, rejection reports, request signatures, webhook verification
 * and the caller's own credential list. Every route authenticates first (before the body is parsed).
 */
export const credentialRoutes: FastifyPluginAsync = async (app) => {
  const api = app.withTypeProvider<ZodTypeProvider>()
  const credentialsById = new Map(app.config.credentials.map(credential => [credential.id, credential]))
  // JSON only: Fastify's default text/plain parser would turn a text body into a 400 instead of a 415.
  app.removeContentTypeParser('text/plain')

  app.addHook('onRequest', async (request) => {
    request.caller = await app.authenticator.authenticate(request.headers.authorization)
  })
  // After authentication (it counts per caller), before the body is read.
  app.addHook('onRequest', app.callerRateLimit)

  /** Authorization order: unknown credential → 404, known but not allowed → 403. */
  function permittedCredential (request: FastifyRequest, id: string): CredentialConfig {
    const credential = credentialsById.get(id)
    if (credential === undefined) throw new BrokerError('CB_CREDENTIAL_NOT_FOUND', `no credential "${id}"`)
    assertMayUse(request.caller as Caller, credential)
    return credential
  }

  function sendToken (request: FastifyRequest, reply: FastifyReply, credential: CredentialConfig, issued: IssuedToken): FastifyReply {
    const { grant } = issued
    const now = Date.now()
    const expiresAt = expiryText(grant)
    // One audit line per token handed out: who, which, a fingerprint (never the token), until when.
    app.audit.info({
      reqId: request.id,
      caller: request.caller?.id,
      credentialId: credential.id,
      fingerprint: grantFingerprint(grant),
      expiresAt,
      source: issued.source
    }, 'token issued')
    return reply.header('cache-control', 'no-store').header('pragma', 'no-cache').send({
      access_token: grant.accessToken,
      token_type: grant.tokenType,
      expires_at: expiresAt,
      expires_in: Math.max(0, Math.floor((grant.expiresAt - now) / 1000)),
      scope: grant.scope
    })
  }

  api.get('/credentials/:id/token', {
    // A HEAD would fetch (maybe mint) and audit a token that is never delivered.
    exposeHeadRoute: false,
    schema: {
      tags: ['tokens'],
      summary: 'A token with at least min_ttl seconds left',
      security: [{ bearer: [] }],
      params: CredentialIdParams,
      querystring: MinTtlQuery,
      response: { 200: TokenSchema, ...problems(400, 401, 403, 404, 409, 422, 429, 502, 503) }
    }
  }, async (request, reply) => {
    const credential = permittedCredential(request, request.params.id)
    const lifetime = maxLifetimeSeconds(credential)
    if (request.query.min_ttl > lifetime) {
      throw new BrokerError('CB_BAD_REQUEST', `min_ttl must be between 0 and the credential's lifetime (${lifetime} s)`)
    }
    const issued = await app.broker.getToken(credential.id, request.query.min_ttl)
    return sendToken(request, reply, credential, issued)
  })

  api.post('/credentials/:id/token/rejections', {
    schema: {
      tags: ['tokens'],
      summary: 'Report that the provider rejected a token: one deduplicated refresh, answers the new token',
      security: [{ bearer: [] }],
      params: CredentialIdParams,
      body: RejectionBody,
      response: { 200: TokenSchema, ...problems(400, 401, 403, 404, 409, 413, 415, 429, 502, 503) }
    }
  }, async (request, reply) => {
    const credential = permittedCredential(request, request.params.id)
    request.log.info({ audit: true, caller: request.caller?.id, credentialId: credential.id, fingerprint: fingerprint(request.body.access_token) }, 'token rejection reported')
    const issued = await app.broker.reportRejected(credential.id, request.body.access_token)
    return sendToken(request, reply, credential, issued)
  })

  api.post('/credentials/:id/signatures', {
    schema: {
      tags: ['signing'],
      summary: 'SIR Giving signature headers for one request (fresh timestamp each call)',
      security: [{ bearer: [] }],
      params: CredentialIdParams,
      body: SignatureBody,
      response: { 200: z.object({ headers: z.record(z.string(), z.string()) }), ...problems(400, 401, 403, 404, 409, 413, 415, 429, 502, 503) }
    }
  }, async (request, reply) => {
    const credential = permittedCredential(request, request.params.id)
    const headers = await app.broker.sign(credential.id, {
      method: request.body.method.toUpperCase(),
      path: request.body.path,
      bodySha256: request.body.body_sha256.toLowerCase()
    })
    request.log.info({ audit: true, caller: request.caller?.id, credentialId: credential.id, method: request.body.method.toUpperCase() }, 'request signed')
    return await reply.header('cache-control', 'no-store').send({ headers })
  })

  api.post('/credentials/:id/webhook-verifications', {
    schema: {
      tags: ['webhooks'],
      summary: 'Verify a provider webhook signature with the secret the broker holds',
      security: [{ bearer: [] }],
      params: CredentialIdParams,
      body: WebhookBody,
      response: { 200: WebhookResultSchema, ...problems(400, 401, 403, 404, 409, 413, 415, 429, 503) }
    }
  }, async (request) => {
    const credential = permittedCredential(request, request.params.id)
    const headers: Record<string, string | string[]> = {}
    for (const [name, value] of Object.entries(request.body.headers)) headers[name.toLowerCase()] = value
    const rawBody = Buffer.from(request.body.body, request.body.body_encoding === 'base64' ? 'base64' : 'utf8')
    const result = await app.broker.verifyWebhook(credential.id, { headers, rawBody })
    request.log.info({ audit: true, caller: request.caller?.id, credentialId: credential.id, valid: result.valid, bodySha256: createHash('sha256').update(rawBody).digest('hex').slice(0, 16) }, 'webhook verified')
    return result.valid ? { valid: true } : { valid: false, reason: result.reason }
  })

  api.get('/credentials', {
    schema: {
      tags: ['tokens'],
      summary: 'The credentials this caller may use, with their status (never secrets)',
      security: [{ bearer: [] }],
      response: { 200: z.object({ credentials: z.array(CredentialStatusSchema) }), ...problems(401, 429, 503) }
    }
  }, async (request) => {
    const caller = request.caller as Caller
    const statuses = app.broker.statuses()
    return {
      credentials: statuses.flatMap(status => {
        const credential = credentialsById.get(status.id)
        return credential !== undefined && mayUse(caller, credential) ? [toStatusBody(status, credentialKind(credential))] : []
      })
    }
  })
}
